"""Choose λ on a validation split of the training data, by robustness to transferred FGSM examples.

The test set is never touched: a normal model trained on the remaining training data makes FGSM
examples of the held-out images, and each candidate λ is scored by its accuracy on them. With
`warm_start`, candidates start from that same normal model, never from a zoo model that has seen the
validation digits. Rows are saved as they finish, so an interrupted sweep picks up where it stopped.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from gradviz.attacks import fgsm
from gradviz.datasets import load_dataset, validation_split
from gradviz.modelstore import save_model
from gradviz.training import TrainConfig, accuracy, train_model

SWEEP_EPS = (0.1, 0.2, 0.3, 0.4, 0.5)
SCORE_EPS = (0.2, 0.3, 0.4, 0.5)
MAX_CLEAN_DROP = 0.005


def _robustness(model, x, y, adversarial: dict[float, torch.Tensor]) -> dict:
    return {"clean": accuracy(model, x, y),
            **{f"transfer@{e:g}": accuracy(model, adv, y) for e, adv in adversarial.items()},
            **{f"whitebox@{e:g}": accuracy(model, fgsm(model, x, y, e), y) for e in adversarial}}


def lambda_sweep(base: TrainConfig, defenses: list[str], lams: list[float], val_size: int = 1000,
                 progress: bool = True, warm_start: bool = False, done: list[dict] | None = None,
                 on_row: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Train `base` once as the normal source and once per (defense, λ); score each on the validation split.

    `done` holds rows of an earlier, interrupted sweep of the same settings: those are not trained again.
    """
    x, y = load_dataset(base.dataset, "train", base.data_dir)
    (fit_x, fit_y), (val_x, val_y) = validation_split(x, y, val_size, seed=base.seed)
    source, card = train_model(replace(base, defense="normal", lam=0.0, lam_warmup=0.0, init_from=None),
                               (fit_x, fit_y), progress=progress)
    adversarial = {e: fgsm(source, val_x, val_y, e) for e in SWEEP_EPS}
    rows = [{"defense": "normal", "lam": 0.0, **_robustness(source, val_x, val_y, adversarial)}]
    with tempfile.TemporaryDirectory() as scratch:
        init = str(save_model(source, {**card, "name": "sweep-source"}, scratch)) if warm_start else None
        for defense in defenses:
            for lam in lams:
                row = next((r for r in done or [] if (r["defense"], r["lam"]) == (defense, lam)), None)
                if row is None:
                    model, _ = train_model(replace(base, defense=defense, lam=lam, init_from=init), (fit_x, fit_y),
                                           progress=progress)
                    row = {"defense": defense, "lam": lam, **_robustness(model, val_x, val_y, adversarial)}
                rows.append(row)
                if on_row is not None:
                    on_row(rows)
    return rows


def choose(rows: list[dict], defense: str) -> dict:
    """Best mean transfer accuracy over SCORE_EPS among λ that cost at most half a point of clean accuracy;
    if every λ costs more, the one that costs least (accuracy is the zoo's hard requirement)."""
    floor = next(r["clean"] for r in rows if r["defense"] == "normal") - MAX_CLEAN_DROP
    mine = [r for r in rows if r["defense"] == defense]
    candidates = [r for r in mine if r["clean"] >= floor]
    if not candidates:
        return max(mine, key=lambda r: r["clean"])
    return max(candidates, key=lambda r: sum(r[f"transfer@{e:g}"] for e in SCORE_EPS))


def to_markdown(rows: list[dict]) -> str:
    """The sweep as a Markdown table (validation accuracies)."""
    keys = ["clean", *[f"transfer@{e:g}" for e in SWEEP_EPS], *[f"whitebox@{e:g}" for e in (0.1, 0.3)]]
    lines = ["| defense | λ | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['defense']} | {r['lam']:g} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def save_sweep(rows: list[dict], out: str | Path, config: TrainConfig) -> Path:
    """Write sweep.json and sweep.md to `out`; called after every row, so a cut-off sweep keeps what finished."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = {d: choose(rows, d)["lam"] for d in {r["defense"] for r in rows} - {"normal"}}
    settings = {k: v for k, v in asdict(config).items() if k not in ("device", "data_dir", "name")}
    (out / "sweep.json").write_text(json.dumps({"config": settings, "rows": rows, "chosen": chosen}, indent=2))
    (out / "sweep.md").write_text(to_markdown(rows) + f"\n\nChosen: {chosen}\n")
    return out


def finished_rows(out: str | Path, config: TrainConfig) -> list[dict]:
    """Rows of an earlier sweep in `out` made with the same settings (none if the settings differ)."""
    path = Path(out) / "sweep.json"
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    settings = {k: v for k, v in asdict(config).items() if k not in ("device", "data_dir", "name")}
    return [r for r in saved["rows"] if r["defense"] != "normal"] if saved.get("config") == settings else []
