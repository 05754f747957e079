"""The paper's protocol: every source model's adversarial examples evaluated on every model.

Results are one tidy row per (source, target, attack, ε) with a Wilson interval; each (source, attack)
block is cached on disk under a key of everything it depends on, so a rerun reuses it.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from gradviz import __version__
from gradviz.attacks.linf import choose_targets
from gradviz.attacks.registry import REGISTRY, Attack, attack_names, get_attack, pixels_changed
from gradviz.data.datasets import dataset_source, load_dataset
from gradviz.evaluation.runs.masking import masking_verdict, vanishing_gradient_share
from gradviz.evaluation.runs.stats import wilson_interval
from gradviz.machine import run_stamp
from gradviz.nets.architecture import channels_last
from gradviz.nets.cards import list_models, require_dataset
from gradviz.nets.store import atomic_write, load_model, read_cached_json
from gradviz.paths import result_folders_holding
from gradviz.progress import progress_bar

INFERENCE_CHUNK = 256  # on CPU, smaller forward batches stay in cache (benchmarks/eval_matrix.py)
PAPER_EPS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
COLUMNS = ["source", "target", "attack", "eps", "accuracy", "correct", "n", "ci_low", "ci_high", "whitebox"]
L0_COLUMNS = ["source", "target", "attack", "budget", "success_rate", "accuracy", "mean_pixels_changed", "n",
              "whitebox"]
Progress = Callable[[int, int, str], None]
AttackNews = Callable[[str], None]  # where an attack inside a block stands: "images 0–1000 of 1000: 4/20"


@dataclass
class EvalConfig:
    """One evaluation run; every field is part of the provenance."""

    dataset: str = "mnist"
    models: list[str] = field(default_factory=list)  # empty: every zoo model of the dataset
    attacks: list[str] = field(default_factory=lambda: ["fgsm", "tgsm"])
    eps: list[float] = field(default_factory=lambda: list(PAPER_EPS))
    n: int = 1000
    seed: int = 0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    target_mode: str = "next"
    batch_size: int = 1000
    precision: str = "fp32"  # "bf16": faster target forward passes; attacks always use fp32 gradients
    data_dir: str | None = None
    iterative_eps: list[float] | None = None  # ε of the iterative ε-attacks (default: eps); 10-20 gradients each
    iterative_n: int | None = None  # iterative ε-attacks on the first iterative_n of the n images (default: all n)
    l0_n: int = 1000  # pixel-budget attacks (JSMA: no ε) on the first l0_n of the n images: up to 98 Jacobians each
    attack_params: dict[str, dict] = field(default_factory=dict)  # {attack: {setting: value}} over the defaults

    def entries(self) -> list[Attack]:
        """The run's attacks, looked up once; unknown attacks and settings are refused before any model loads."""
        entries = [get_attack(a) for a in self.attacks]
        for entry in entries:
            self.params_for(entry)
        stray = sorted(set(self.attack_params) - set(self.attacks))
        if stray:
            raise ValueError(f"settings given for {', '.join(stray)}, which this run does not include")
        return entries

    def eps_for(self, entry: Attack) -> list[float]:
        """The ε grid of one attack: multi-step attacks may run on a smaller grid than single-step ones."""
        multi = entry.multi_step and entry.eps_bounded
        return list(self.iterative_eps) if multi and self.iterative_eps is not None else list(self.eps)

    def n_for(self, entry: Attack, n: int) -> int:
        """How many of the n images an attack runs on."""
        if not entry.eps_bounded:
            return min(n, self.l0_n)
        return min(n, self.iterative_n) if entry.multi_step and self.iterative_n is not None else n

    def params_for(self, entry: Attack) -> dict:
        """The attack's settings: its registry defaults with this run's overrides, checked."""
        return entry.settings(self.attack_params.get(entry.name))


@dataclass
class EvalResult:
    rows: pd.DataFrame
    masking: pd.DataFrame
    provenance: dict
    l0: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=L0_COLUMNS))  # pixel-budget attacks


def default_models(dataset: str) -> list[str]:
    """The committed zoo's models of one dataset, one per defense, in a stable order (an adopted paper-scale pair,
    `zoo_role`, is evaluated by name: the reproduction's claims compare one model per defense)."""
    return [c["name"] for c in list_models() if c["dataset"] == dataset and c["origin"] == "zoo"
            and not c.get("zoo_role")]


def _block_key(config: EvalConfig, source_card: dict, target_cards: list[dict], entry: Attack,
               eps: list[float]) -> str:
    payload = {"source": source_card["sha256"], "targets": sorted(c["sha256"] for c in target_cards),  # any order
               "attack": entry.name, "params": config.params_for(entry), "eps": eps,
               "images": config.n_for(entry, config.n), "seed": config.seed,
               "target_mode": config.target_mode, "dataset": config.dataset, "precision": config.precision,
               "data": dataset_source(config.dataset, config.data_dir), "version": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@torch.no_grad()
def correct_counts(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   precision: str = "fp32") -> int:
    """Correctly classified images; `precision="bf16"` runs the forward passes under bf16 autocast
    (AMX/tensor cores), which may flip a prediction that sits on a decision boundary."""
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    chunk = min(batch_size, INFERENCE_CHUNK) if x.device.type == "cpu" else batch_size
    with autocast:
        return sum(int((model(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum()) for i in range(0, len(x), chunk))


def _attack_labels(config: EvalConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   entry: Attack) -> torch.Tensor:
    """What the attack aims at: the target classes of a targeted attack, the true classes otherwise."""
    return choose_targets(model, x, y, config.target_mode, config.seed) if entry.targeted else y


def _attack_block(config: EvalConfig, source: str, models: dict[str, nn.Module], x: torch.Tensor,
                  y: torch.Tensor, entry: Attack, clean: dict[str, int] | None, eps_list: list[float],
                  on_news: AttackNews | None = None) -> list[dict]:
    """Rows of one source model and ε-attack: every ε of `eps_list`, every target model.

    ε = 0 leaves the images unchanged, so `clean` (correct counts per target) stands in for it. `on_news` hears
    where an attack that reports progress stands (steps, or images for AutoAttack): a block can take half an hour.
    """
    n = config.n_for(entry, len(x))
    if n < len(x):
        x, y, clean = x[:n], y[:n], None
    clean = clean if clean is not None else {t: correct_counts(m, x, y, config.batch_size) for t, m in models.items()}
    params = config.params_for(entry)
    attacked = [e for e in eps_list if e != 0]
    counts = {(e, t): 0 for e in attacked for t in models}
    for i in range(0, len(x), config.batch_size) if attacked else []:
        xb, yb = x[i:i + config.batch_size], y[i:i + config.batch_size]
        labels = _attack_labels(config, models[source], xb, yb, entry)
        where = f"images {i}–{i + len(xb)} of {len(x)}"
        told = None if on_news is None else (lambda done, total, where=where: on_news(f"{where}: {done}/{total}"))
        for e, adv in entry.sweep(models[source], xb, labels, attacked, config.seed, told, **params).items():
            for target, model in models.items():
                counts[(e, target)] += correct_counts(model, adv, yb, config.batch_size, config.precision)
    counts.update({(0.0, t): c for t, c in clean.items()} if len(attacked) < len(eps_list) else {})
    return [_row(source, target, entry.name, e, counts[(e, target)], len(x)) for e in eps_list for target in models]


def _l0_block(config: EvalConfig, source: str, models: dict[str, nn.Module], x: torch.Tensor,
              y: torch.Tensor, entry: Attack) -> list[dict]:
    """A pixel-budget attack made on `source` (JSMA: θ = 1, γ = 0.25, target (y+1) mod 10 by default): how
    often each model is then fooled (predicts the target; for an untargeted attack, anything but the truth),
    its accuracy, and how many pixels the attack changed."""
    n = config.n_for(entry, len(x))
    x, y = x[:n], y[:n]
    params = config.params_for(entry)
    labels = _attack_labels(config, models[source], x, y, entry)
    adv = torch.cat([entry.generate(models[source], x[i:i + config.batch_size], labels[i:i + config.batch_size],
                                    seed=config.seed, **params) for i in range(0, len(x), config.batch_size)])
    pixels = float(pixels_changed(x, adv).float().mean())
    rows = []
    for name, model in models.items():
        correct = correct_counts(model, adv, y, config.batch_size, config.precision)
        hits = correct_counts(model, adv, labels, config.batch_size, config.precision) if entry.targeted \
            else len(x) - correct
        rows.append({"source": source, "target": name, "attack": entry.name, "budget": entry.budget(None, params),
                     "success_rate": hits / len(x), "accuracy": correct / len(x), "mean_pixels_changed": pixels,
                     "n": len(x), "whitebox": name == source})
    return rows


def _row(source: str, target: str, attack: str, eps: float, correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"source": source, "target": target, "attack": attack, "eps": eps, "accuracy": correct / n,
            "correct": correct, "n": n, "ci_low": low, "ci_high": high, "whitebox": source == target}


def _kind(attack: str) -> str:
    entry = REGISTRY.get(attack)
    return entry.kind if entry else "gradient"


def masking_table(config: EvalConfig, models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                  rows: pd.DataFrame, at_eps: float = 0.3) -> pd.DataFrame:
    """Per model: share of vanishing gradients, white-box FGSM vs the strongest other attack (at the ε nearest
    `at_eps`), and the black-box attack vs the best gradient attack at the ε where it beats them most."""
    eps = min(config.eps, key=lambda e: abs(e - at_eps))
    white = rows[rows.whitebox & (rows.eps > 0)]
    out = []
    for name, model in models.items():
        own = white[white.source == name]
        mine = own[own.eps == eps].set_index("attack").accuracy
        share = vanishing_gradient_share(model, x[:config.batch_size], y[:config.batch_size])
        others = [mine[a] for a in mine.index if a != "fgsm"]
        black_eps, black_box, gradient = _black_box_gap(own)
        flagged, reason = masking_verdict(share, mine.get("fgsm"), min(others) if others else None,
                                          black_box, gradient, black_eps)
        out.append({"model": name, "eps": eps, "vanishing_share": share, "fgsm_whitebox": mine.get("fgsm"),
                    "strongest_other_whitebox": min(others) if others else None,
                    "black_box_eps": black_eps, "black_box_whitebox": black_box, "flagged": flagged,
                    "reason": reason})
    return pd.DataFrame(out)


def _black_box_gap(white: pd.DataFrame) -> tuple[float | None, float | None, float | None]:
    """(ε, black-box accuracy, best gradient attack's accuracy) at the ε where the black-box attack leaves the
    least accuracy relative to every gradient attack; Nones where no ε has both kinds."""
    best = (None, None, None)
    for eps, block in white.groupby("eps"):
        kinds = block.attack.map(_kind)
        if (kinds == "black-box").any() and (kinds == "gradient").any():
            black, grad = block.accuracy[kinds == "black-box"].min(), block.accuracy[kinds == "gradient"].min()
            if best[0] is None or grad - black > best[2] - best[1]:
                best = (float(eps), float(black), float(grad))
    return best


def _eps_blocks(config: EvalConfig, entry: Attack) -> list[list[float]]:
    """The ε values computed (and cached) together: a multi-step attack's each alone, so that a long run (AutoAttack
    on a robust model: half an hour an ε on CPU) resumes after an interruption losing at most one ε of one model."""
    eps = config.eps_for(entry)
    return [[e] for e in eps] if entry.multi_step and entry.eps_bounded else [eps]


def _cached_block(path: Path | None) -> list[dict] | None:
    """A cached block's rows, or None to compute it: absent, or unreadable (a truncated or damaged file is
    reported, removed and recomputed, never reused)."""
    return read_cached_json(path, lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v))


def evaluate(config: EvalConfig, cache_dir: str | Path | None = None, progress: bool = True,
             on_progress: Progress | None = None, finished_only: bool = False) -> EvalResult:
    """Run the source×target matrix for every attack and ε; cached blocks are reused. `finished_only` computes
    nothing: it assembles the blocks an earlier (or still running) run finished and lists the rest in the
    provenance's `blocks_missing`, so an AutoAttack run of many hours can be reported while it goes on."""
    started = time.perf_counter()
    names = config.models or default_models(config.dataset)
    if not names:
        raise ValueError(f"no models to evaluate for {config.dataset}")
    if not config.attacks:
        raise ValueError(f"no attacks to run; choose from {', '.join(attack_names())}")
    entries = config.entries()
    loaded = {n: load_model(n, config.device) for n in names}
    models = {n: channels_last(m) for n, (m, _) in loaded.items()}
    cards = {n: c for n, (_, c) in loaded.items()}
    require_dataset(cards, config.dataset)
    x, y = load_dataset(config.dataset, "test", config.data_dir)
    if config.n > len(x):
        raise ValueError(f"--n {config.n} is more than the {len(x)} test images of {config.dataset}")
    x, y = x[:config.n].to(config.device), y[:config.n].to(config.device)
    cache = Path(cache_dir) if cache_dir else None
    blocks = [(s, entry, eps) for s in names for entry in entries for eps in _eps_blocks(config, entry)]
    rows, reused, clean, per_attack, missing = [], 0, None, {}, []
    bar = progress_bar(len(blocks), 0, "evaluate", progress, unit="block")
    for done, (source, entry, eps) in enumerate(blocks, 1):
        bar.set_postfix_str(f"{source} {entry.name}")
        key = _block_key(config, cards[source], list(cards.values()), entry, eps)
        path = cache / f"{key}.json" if cache else None
        block = _cached_block(path)
        if block is not None:
            reused += 1
        elif finished_only:
            missing.append(f"{source} {entry.name} ε={','.join(map(str, eps))}")
            bar.update()
            continue
        else:
            if clean is None:
                clean = {t: correct_counts(m, x, y, config.batch_size) for t, m in models.items()}
            tick = time.perf_counter()
            def news(text: str, what: str = f"{source} {entry.name} ε={','.join(map(str, eps))}") -> None:
                bar.set_postfix_str(f"{what}, {text}", refresh=True)

            block = (_attack_block(config, source, models, x, y, entry, clean, eps, news) if entry.eps_bounded
                     else _l0_block(config, source, models, x, y, entry))
            block = [{**r, "block_seconds": round(time.perf_counter() - tick, 2)} for r in block]
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda p, block=block: p.write_text(json.dumps(block)))
        rows += block
        timing = per_attack.setdefault(entry.name, {})
        timing[source] = round(timing.get(source, 0.0) + (block[0].get("block_seconds", 0.0) if block else 0.0), 2)
        bar.update()
        if on_progress is not None:
            on_progress(done, len(blocks), f"{source} · {entry.name}")
    bar.close()
    frame = pd.DataFrame([r for r in rows if "eps" in r], columns=COLUMNS)
    masking = masking_table(config, models, x, y, frame) if len(frame) else pd.DataFrame()
    provenance = _provenance(config, cards, time.perf_counter() - started, reused, len(blocks))
    provenance["seconds_per_attack"] = per_attack  # {attack: {source: seconds its blocks took when computed}}
    if finished_only:
        provenance["blocks_missing"] = missing
    return EvalResult(frame, masking, provenance, pd.DataFrame([r for r in rows if "eps" not in r],
                                                               columns=L0_COLUMNS))


def evaluation_summary(result: EvalResult) -> str:
    """What a run found, in a terminal: white-box accuracy per ε-attack and ε, the pixel-budget attacks'
    success rates (rows: made on; columns: evaluated on) and the masking flags, each only where the run has it."""
    parts = []
    if len(result.rows):
        white = result.rows[result.rows.whitebox]
        parts.append("white-box accuracy\n" + white.pivot_table(index="source", columns=["attack", "eps"],
                                                                 values="accuracy").round(3).to_string())
    for attack, block in result.l0.groupby("attack", sort=False):
        table = block.pivot_table(index="source", columns="target", values="success_rate", sort=False)
        parts.append(f"{attack} success rate ({block.budget.iloc[0]}, first {int(block.n.iloc[0])} images)\n"
                     + table.round(3).to_string())
    if len(result.masking):
        parts.append(result.masking[["model", "flagged", "reason"]].to_string(index=False))
    return "\n\n".join(parts)


def _provenance(config: EvalConfig, cards: dict, seconds: float, reused: int, blocks: int) -> dict:
    return {
        "config": asdict(config), "models": {n: {"sha256": c["sha256"], "defense": c["defense"],
                                                  "lam": c.get("lam"), "eps": c.get("eps"),
                                                  "card": c.get("card_path")}
                                              for n, c in cards.items()},
        "data_source": dataset_source(config.dataset, config.data_dir), "images": "first n of the test split",
        "seconds": round(seconds, 2), "cached_blocks_reused": f"{reused}/{blocks}", **run_stamp(config.device, __version__),
    }


def write_results(result: EvalResult, out: str | Path) -> Path:
    """results.csv, masking.csv and provenance.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.csv", lambda p: result.rows.to_csv(p, index=False))
    atomic_write(out / "masking.csv", lambda p: result.masking.to_csv(p, index=False))
    if len(result.l0):
        atomic_write(out / "l0.csv", lambda p: result.l0.to_csv(p, index=False))
    atomic_write(out / "provenance.json", lambda p: p.write_text(json.dumps(result.provenance, indent=2, default=str)))
    return out


def read_results(folder: str | Path) -> EvalResult:
    """Load a result folder written by write_results (for the dashboard's Robustness page)."""
    folder = Path(folder)
    if not (folder / "results.csv").is_file():
        raise FileNotFoundError(f"{folder} holds no results.csv")
    masking = folder / "masking.csv"
    l0_rows = folder / "l0.csv"
    l0 = pd.read_csv(l0_rows) if l0_rows.is_file() else pd.DataFrame(columns=L0_COLUMNS)
    return EvalResult(pd.read_csv(folder / "results.csv"),
                      pd.read_csv(masking) if masking.is_file() else pd.DataFrame(),
                      json.loads((folder / "provenance.json").read_text()), l0)


def result_folders() -> dict[str, Path]:
    """Every folder holding a results.csv: the committed reproduction runs, then the user's."""
    return result_folders_holding("results.csv")
