""""Does input-gradient regularization help my model?": a short report on one normal / regularized pair of any
architecture and dataset, from an evaluate folder (and an interpret folder, if given) holding both.

The paper's claim, asked of the user's pair: examples made on the normal model should fool the regularized one
less than they fool the normal model itself, at every ε. A difference counts only when the two 95% Wilson
intervals do not overlap (the numbers are the evaluation's own; nothing here runs a model).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradviz.evaluation.report.claims import accuracy_row
from gradviz.evaluation.report.tables import markdown_table
from gradviz.evaluation.runs.interpretation import read_interpretation
from gradviz.evaluation.runs.matrix import read_results


def _cell(row: pd.Series | None) -> str:
    return "–" if row is None else f"{row.accuracy:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"


def _clearly_above(a: pd.Series | None, b: pd.Series | None) -> bool | None:
    """a's interval lies wholly above b's (None when either is missing)."""
    return None if a is None or b is None else bool(a.ci_low > b.ci_high)


def robustness_lines(rows: pd.DataFrame, normal: str, regularized: str, attack: str = "fgsm") -> tuple[list[str], str]:
    """The transfer table (examples made on `normal`) and its one-sentence verdict."""
    eps_list = sorted(e for e in set(rows.eps[rows.attack.eq(attack)]) if e > 0)
    table, wins, tested = [], [], 0
    for eps in eps_list:
        own = accuracy_row(rows, normal, normal, attack, eps)
        moved = accuracy_row(rows, normal, regularized, attack, eps)
        white = accuracy_row(rows, regularized, regularized, attack, eps)
        above = _clearly_above(moved, own)
        tested += above is not None
        wins += [f"{eps:g}"] if above else []
        table.append([f"{eps:g}", _cell(own), _cell(moved), _cell(white),
                      {True: "yes", False: "no", None: "–"}[above]])
    header = ["ε", f"{normal} (white-box)", f"{regularized} (transferred from {normal})",
              f"{regularized} (white-box)", "regularized clearly higher"]
    verdict = (f"**Helped at ε = {', '.join(wins)}** of {tested} tested" if wins
               else f"**Not shown**: at no ε of {tested} does the regularized model's interval lie above the normal's")
    return markdown_table(header, table), verdict


def interpretation_lines(folder: str | Path, normal: str, regularized: str) -> list[str]:
    """Each metric of each method: both models' means with intervals, and which is better (non-overlapping)."""
    summary = read_interpretation(folder).summary
    summary = summary[summary.model.isin([normal, regularized])]
    rows, better = [], 0
    for (method, metric), group in summary.groupby(["method", "metric"], sort=False):
        by_model = {r.model: r for r in group.itertuples()}
        if normal not in by_model or regularized not in by_model:
            continue
        a, b = by_model[regularized], by_model[normal]
        up = a.ci_low > b.ci_high if a.higher_is_better else a.ci_high < b.ci_low
        better += bool(up)
        rows.append([method, metric, "higher" if a.higher_is_better else "lower",
                     f"{b.mean:.3g} [{b.ci_low:.3g}, {b.ci_high:.3g}]", f"{a.mean:.3g} [{a.ci_low:.3g}, {a.ci_high:.3g}]",
                     "yes" if up else "no"])
    return [f"The regularized model's maps are clearly better on **{better} of {len(rows)}** method × metric "
            "cells (intervals apart, in the metric's good direction).", "",
            *markdown_table(["method", "metric", "better is", normal, regularized, "regularized clearly better"], rows)]


def pair_report(evaluation: str | Path, normal: str, regularized: str,
                interpretation: str | Path | None = None) -> str:
    """The Markdown report on `regularized` against `normal` (both must be in the evaluation)."""
    result = read_results(evaluation)
    models = result.provenance.get("models", {})
    missing = [m for m in (normal, regularized) if m not in models]
    if missing:
        raise ValueError(f"{evaluation} did not evaluate {', '.join(missing)}; it holds {', '.join(models)}")
    rows = result.rows
    attack = "fgsm" if "fgsm" in set(rows.attack) else str(rows.attack.iloc[0])
    table, verdict = robustness_lines(rows, normal, regularized, attack)
    n = int(rows.n.max())
    clean_rows = [accuracy_row(rows, m, m, attack, 0.0) for m in (normal, regularized)]
    clean = [[m, _cell(r)] for m, r in zip((normal, regularized), clean_rows)]
    if all(r is not None for r in clean_rows):
        change = clean_rows[1].accuracy - clean_rows[0].accuracy
        verdict += f", at a clean-accuracy change of {change:+.3f} ({clean_rows[0].accuracy:.3f} → " \
                   f"{clean_rows[1].accuracy:.3f})"
    lines = [f"# Does input-gradient regularization help {regularized}?", "",
             f"Against {normal}, on the first {n} test images of {result.provenance['config']['dataset']} "
             f"({result.provenance.get('device', 'device not recorded')}). Accuracies carry 95% Wilson intervals; "
             "a difference counts only when the intervals do not overlap.", "",
             "## Clean accuracy", "", *markdown_table(["model", "accuracy"], clean), "",
             f"## Robustness to {attack.upper()} examples made on the normal model", "", verdict + ".", "", *table]
    flagged = [] if result.masking.empty else list(result.masking.model[result.masking.flagged.astype(bool)])
    lines += ["", f"Gradient masking flagged (gradviz's checks): {', '.join(flagged) if flagged else 'none'}. A white-box "
              "accuracy that does not fall as ε grows also says the input gradient vanishes rather than that the "
              "model resists: FGSM then moves no pixel."]
    if interpretation is not None:
        lines += ["", "## Saliency maps, measured", "", *interpretation_lines(interpretation, normal, regularized)]
    return "\n".join(lines) + "\n"
