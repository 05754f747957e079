"""The paper's protocol: every source model's adversarial examples evaluated on every model.

Results are one tidy row per (source, target, attack, ε) with a Wilson interval; each (source, attack)
block is cached on disk under a key of everything it depends on, so a rerun reuses it.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from gradviz import __version__
from gradviz.architecture import channels_last
from gradviz.attacks import LIVE_ATTACKS, choose_targets, run_attack
from gradviz.cards import list_models, require_dataset
from gradviz.datasets import dataset_source, load_dataset
from gradviz.jsma import jsma
from gradviz.masking import masking_verdict, vanishing_gradient_share
from gradviz.modelstore import load_model
from gradviz.progress import progress_bar
from gradviz.stats import wilson_interval

INFERENCE_CHUNK = 256  # on CPU, smaller forward batches stay in cache: 2.66 s → 2.36 s per 10,000 images
PAPER_EPS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ITERATIVE = ("itgsm", "pgd")
COLUMNS = ["source", "target", "attack", "eps", "accuracy", "correct", "n", "ci_low", "ci_high", "whitebox"]
JSMA_COLUMNS = ["source", "target", "attack", "success_rate", "accuracy", "mean_pixels_changed", "n", "whitebox"]
Progress = Callable[[int, int, str], None]


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
    iterative_eps: list[float] | None = None  # ε for itgsm and pgd (default: eps); they cost 10-20 gradients each
    iterative_n: int | None = None  # itgsm and pgd on the first iterative_n of the n images (default: all n)
    jsma_n: int = 1000  # JSMA (no ε) runs on the first jsma_n of the n images: up to 98 Jacobian steps each

    def eps_for(self, attack: str) -> list[float]:
        """The ε grid of one attack: iterative attacks may run on a smaller grid than single-step ones."""
        return list(self.iterative_eps) if attack in ITERATIVE and self.iterative_eps is not None else list(self.eps)


@dataclass
class EvalResult:
    rows: pd.DataFrame
    masking: pd.DataFrame
    provenance: dict
    jsma: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=JSMA_COLUMNS))


def default_models(dataset: str) -> list[str]:
    """The committed zoo's models of one dataset, in a stable order."""
    return [c["name"] for c in list_models() if c["dataset"] == dataset and c["origin"] == "zoo"]


def _block_key(config: EvalConfig, source_card: dict, target_cards: list[dict], attack: str) -> str:
    payload = {"source": source_card["sha256"], "targets": [c["sha256"] for c in target_cards],
               "attack": attack, "eps": config.eps_for(attack),
               "jsma_n": config.jsma_n if attack == "jsma" else None, "n": config.n, "seed": config.seed,
               "target_mode": config.target_mode, "dataset": config.dataset, "precision": config.precision,
               "data": dataset_source(config.dataset, config.data_dir), "version": __version__}
    if attack in ITERATIVE and config.iterative_n is not None:  # only then: other blocks keep their cache keys
        payload["iterative_n"] = config.iterative_n
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


def _attack_block(config: EvalConfig, source: str, models: dict[str, nn.Module], x: torch.Tensor,
                  y: torch.Tensor, attack: str, clean: dict[str, int] | None = None) -> list[dict]:
    """Rows of one source model and attack: every ε, every target model.

    ε = 0 leaves the images unchanged, so `clean` (correct counts per target) stands in for it.
    """
    if attack in ITERATIVE and config.iterative_n is not None and config.iterative_n < len(x):
        x, y, clean = x[:config.iterative_n], y[:config.iterative_n], None
    clean = clean if clean is not None else {t: correct_counts(m, x, y, config.batch_size) for t, m in models.items()}
    eps_list = config.eps_for(attack)
    attacked = [e for e in eps_list if e != 0]
    counts = {(e, t): 0 for e in attacked for t in models}
    for i in range(0, len(x), config.batch_size) if attacked else []:
        xb, yb = x[i:i + config.batch_size], y[i:i + config.batch_size]
        adversarial = run_attack(models[source], xb, yb, attack, attacked, config.target_mode, config.seed)
        for e, adv in adversarial.items():
            for target, model in models.items():
                counts[(e, target)] += correct_counts(model, adv, yb, config.batch_size, config.precision)
    counts.update({(0.0, t): c for t, c in clean.items()} if len(attacked) < len(eps_list) else {})
    return [_row(source, target, attack, e, counts[(e, target)], len(x)) for e in eps_list for target in models]


def _jsma_block(config: EvalConfig, source: str, models: dict[str, nn.Module], x: torch.Tensor,
                y: torch.Tensor) -> list[dict]:
    """JSMA (θ = 1, γ = 0.25, target (y+1) mod 10) made on `source`: how often each model then predicts the
    target, its accuracy, and the pixels the attack changed."""
    x, y = x[:config.jsma_n], y[:config.jsma_n]
    target = choose_targets(models[source], x, y, config.target_mode, config.seed)
    made = [jsma(models[source], x[i:i + config.batch_size], target[i:i + config.batch_size])
            for i in range(0, len(x), config.batch_size)]
    adv = torch.cat([m.images for m in made])
    pixels = float(torch.cat([m.pixels_changed for m in made]).float().mean())
    rows = []
    for name, model in models.items():
        hits = correct_counts(model, adv, target, config.batch_size, config.precision)
        rows.append({"source": source, "target": name, "attack": "jsma", "success_rate": hits / len(x),
                     "accuracy": correct_counts(model, adv, y, config.batch_size, config.precision) / len(x),
                     "mean_pixels_changed": pixels, "n": len(x), "whitebox": name == source})
    return rows


def _row(source: str, target: str, attack: str, eps: float, correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"source": source, "target": target, "attack": attack, "eps": eps, "accuracy": correct / n,
            "correct": correct, "n": n, "ci_low": low, "ci_high": high, "whitebox": source == target}


def masking_table(config: EvalConfig, models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                  rows: pd.DataFrame, at_eps: float = 0.3) -> pd.DataFrame:
    """Per model: share of vanishing gradients and white-box FGSM vs the strongest other attack."""
    eps = min(config.eps, key=lambda e: abs(e - at_eps))
    white = rows[rows.whitebox & (rows.eps == eps)]
    out = []
    for name, model in models.items():
        mine = white[white.source == name].set_index("attack").accuracy
        share = vanishing_gradient_share(model, x[:config.batch_size], y[:config.batch_size])
        others = [mine[a] for a in mine.index if a != "fgsm"]
        flagged, reason = masking_verdict(share, mine.get("fgsm"), min(others) if others else None)
        out.append({"model": name, "eps": eps, "vanishing_share": share, "fgsm_whitebox": mine.get("fgsm"),
                    "strongest_other_whitebox": min(others) if others else None, "flagged": flagged,
                    "reason": reason})
    return pd.DataFrame(out)


def evaluate(config: EvalConfig, cache_dir: str | Path | None = None, progress: bool = True,
             on_progress: Progress | None = None) -> EvalResult:
    """Run the source×target matrix for every attack and ε; cached blocks are reused."""
    started = time.perf_counter()
    names = config.models or default_models(config.dataset)
    if not names:
        raise ValueError(f"no models to evaluate for {config.dataset}")
    unknown = sorted(set(config.attacks) - set(LIVE_ATTACKS))
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(LIVE_ATTACKS)}")
    loaded = {n: load_model(n, config.device) for n in names}
    models = {n: channels_last(m) for n, (m, _) in loaded.items()}
    cards = {n: c for n, (_, c) in loaded.items()}
    require_dataset(cards, config.dataset)
    x, y = load_dataset(config.dataset, "test", config.data_dir)
    if config.n > len(x):
        raise ValueError(f"--n {config.n} is more than the {len(x)} test images of {config.dataset}")
    x, y = x[:config.n].to(config.device), y[:config.n].to(config.device)
    cache = Path(cache_dir) if cache_dir else None
    blocks = [(s, a) for s in names for a in config.attacks]
    rows, reused, clean = [], 0, None
    bar = progress_bar(len(blocks), 0, "evaluate", progress, unit="block")
    for done, (source, attack) in enumerate(blocks, 1):
        bar.set_postfix_str(f"{source} {attack}")
        key = _block_key(config, cards[source], list(cards.values()), attack)
        path = cache / f"{key}.json" if cache else None
        if path is not None and path.is_file():
            block, reused = json.loads(path.read_text()), reused + 1
        else:
            if clean is None:
                clean = {t: correct_counts(m, x, y, config.batch_size) for t, m in models.items()}
            block = (_jsma_block(config, source, models, x, y) if attack == "jsma"
                     else _attack_block(config, source, models, x, y, attack, clean))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(block))
        rows += block
        bar.update()
        if on_progress is not None:
            on_progress(done, len(blocks), f"{source} · {attack}")
    bar.close()
    frame = pd.DataFrame([r for r in rows if r["attack"] != "jsma"], columns=COLUMNS)
    masking = masking_table(config, models, x, y, frame)
    provenance = _provenance(config, cards, time.perf_counter() - started, reused, len(blocks))
    return EvalResult(frame, masking, provenance, pd.DataFrame([r for r in rows if r["attack"] == "jsma"],
                                                               columns=JSMA_COLUMNS))


def _provenance(config: EvalConfig, cards: dict, seconds: float, reused: int, blocks: int) -> dict:
    device = (torch.cuda.get_device_name(torch.device(config.device)) if config.device.startswith("cuda")
              else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)")
    return {
        "config": asdict(config), "models": {n: {"sha256": c["sha256"], "defense": c["defense"],
                                                  "lam": c.get("lam"), "eps": c.get("eps"),
                                                  "card": c.get("card_path")}
                                              for n, c in cards.items()},
        "data_source": dataset_source(config.dataset, config.data_dir), "images": "first n of the test split",
        "device": device, "seconds": round(seconds, 2), "cached_blocks_reused": f"{reused}/{blocks}",
        "versions": {"gradviz": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(result: EvalResult, out: str | Path) -> Path:
    """results.csv, masking.csv and provenance.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.rows.to_csv(out / "results.csv", index=False)
    result.masking.to_csv(out / "masking.csv", index=False)
    if len(result.jsma):
        result.jsma.to_csv(out / "jsma.csv", index=False)
    (out / "provenance.json").write_text(json.dumps(result.provenance, indent=2, default=str))
    return out


def read_results(folder: str | Path) -> EvalResult:
    """Load a result folder written by write_results (for the dashboard's Robustness page)."""
    folder = Path(folder)
    if not (folder / "results.csv").is_file():
        raise FileNotFoundError(f"{folder} holds no results.csv")
    masking, jsma_rows = folder / "masking.csv", folder / "jsma.csv"
    return EvalResult(pd.read_csv(folder / "results.csv"),
                      pd.read_csv(masking) if masking.is_file() else pd.DataFrame(),
                      json.loads((folder / "provenance.json").read_text()),
                      pd.read_csv(jsma_rows) if jsma_rows.is_file() else pd.DataFrame(columns=JSMA_COLUMNS))


COMMITTED_RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def user_results_dir() -> Path:
    """Where evaluations started from the dashboard are written."""
    from gradviz.cards import user_model_dir

    return user_model_dir().parent / "results"


def result_folders() -> dict[str, Path]:
    """Every folder holding a results.csv: the committed reproduction runs, then the user's."""
    found = {}
    for root in (COMMITTED_RESULTS, user_results_dir()):
        for csv in sorted(root.glob("*/results.csv")) if root.is_dir() else []:
            found[f"{csv.parent.name} ({'committed' if root == COMMITTED_RESULTS else 'yours'})"] = csv.parent
    return found
