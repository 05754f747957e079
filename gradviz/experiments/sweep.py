"""Choose λ from a λ × seed sweep scored on held-out training digits, by robustness to transferred FGSM.

The test set is never touched: a normal model trained on the remaining training data makes FGSM examples
of the held-out digits, and each candidate is scored by its accuracy on them. The rule works on the mean
over seeds (a single seed moved Grad Reg (y)'s ε = 0.4 accuracy by ±0.07) and shows the spread beside it.
"""
from __future__ import annotations

import math
import statistics

from gradviz.evaluation.report.tables import markdown_table

SWEEP_EPS = (0.1, 0.2, 0.3, 0.4, 0.5)
SCORE_EPS = (0.2, 0.3, 0.4, 0.5)
MAX_CLEAN_DROP = 0.005
COLUMNS = ("clean", *[f"transfer@{e:g}" for e in SWEEP_EPS])


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def by_lambda(rows: list[dict], defense: str) -> list[dict]:
    """One row per λ of `defense`: mean and sd over seeds of every column, and the transfer score."""
    out = []
    for lam in sorted({r["lam"] for r in rows if r["defense"] == defense}):
        mine = [r for r in rows if r["defense"] == defense and r["lam"] == lam]
        row = {"defense": defense, "lam": lam, "seeds": sorted(r["seed"] for r in mine)}
        for column in COLUMNS:
            row[column], row[f"{column} sd"] = _spread([r[column] for r in mine])
        row["score"], row["score sd"] = _spread([sum(r[f"transfer@{e:g}"] for e in SCORE_EPS) for r in mine])
        out.append(row)
    return out


def choose(rows: list[dict], defense: str) -> dict:
    """Best mean transfer score over SCORE_EPS among λ whose mean clean accuracy is within half a point of the
    normal model's; if every λ costs more, the one that costs least (accuracy is the zoo's hard requirement)."""
    floor = next(r["clean"] for r in rows if r["defense"] == "normal") - MAX_CLEAN_DROP
    means = by_lambda(rows, defense)
    if not means:
        raise ValueError(f"the sweep has no finished {defense} candidates yet")
    candidates = [r for r in means if r["clean"] >= floor]
    if not candidates:
        return max(means, key=lambda r: r["clean"])
    return max(candidates, key=lambda r: r["score"])


def _cell(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"  # the reference is not scored against its own examples


def to_markdown(rows: list[dict]) -> str:
    """Every run (validation accuracies), then the mean ± sd over seeds per λ, then the choice."""
    runs = sorted(rows, key=lambda r: (r["defense"] != "normal", r["defense"], r["lam"], r["seed"]))
    lines = markdown_table(["defense", "λ", "seed", *COLUMNS],
                           ([r["defense"], f"{r['lam']:g}", r["seed"], *(_cell(r[c]) for c in COLUMNS)] for r in runs))
    for defense in sorted({r["defense"] for r in rows} - {"normal"}):
        means = by_lambda(rows, defense)
        lines += ["", f"Mean ± sd over seeds ({defense}):", "", *markdown_table(
            ["λ", "seeds", *COLUMNS],
            ([f"{m['lam']:g}", len(m["seeds"]), *(f"{m[c]:.3f} ± {m[f'{c} sd']:.3f}" for c in COLUMNS)] for m in means))]
        if any(r["defense"] == "normal" for r in rows):
            lines += ["", f"Chosen λ ({defense}): {choose(rows, defense)['lam']:g}"]
    return "\n".join(lines)
