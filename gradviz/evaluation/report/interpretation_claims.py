"""Which parts of the paper's interpretability claim the metrics support: paired comparisons of two models' scores
on the same images, with a bootstrap interval of the mean difference, rendered for docs/REPRODUCTION.md."""
from __future__ import annotations

import numpy as np
import pandas as pd

from gradviz.attribution.metrics import CATEGORIES
from gradviz.attribution.metrics import REGISTRY as METRICS
from gradviz.evaluation.report.tables import markdown_table
from gradviz.evaluation.runs.interpretation import InterpretResult
from gradviz.evaluation.runs.stats import bootstrap_intervals

# What each category says about the paper's claim that regularized input gradients are better explanations.
CLAIM_PARTS = {
    "faithfulness": "the map points at the pixels the model uses",
    "robustness": "the map is stable under small input noise",
    "complexity": "the map is sharper (concentrated on few pixels)",
    "randomisation": "the map depends on the trained weights and the class (sanity)",
    "localisation": "the map lies on the object (the digit)",
}


def paired_differences(scores: pd.DataFrame, model: str, baseline: str, seed: int = 0) -> pd.DataFrame:
    """Per method and metric: the mean over images of (model − baseline), oriented so that positive is better,
    with its 95% bootstrap interval and the number of images both scored (columns method, metric, better_by,
    ci_low, ci_high, n). One pass over the scores for every cell."""
    two = scores[scores.model.isin([model, baseline])]
    wide = two.pivot(index=["method", "metric", "image"], columns="model", values="score")
    cells, keys = [], []
    for (method, metric), cell in wide.groupby(level=["method", "metric"], sort=False):
        both = cell.reindex(columns=[model, baseline]).dropna()
        sign = 1.0 if METRICS[metric].higher_is_better else -1.0
        cells.append(sign * (both[model] - both[baseline]).to_numpy(dtype=np.float64))
        keys.append((method, metric))
    intervals = bootstrap_intervals(cells, seed=seed)
    return pd.DataFrame([{"method": method, "metric": metric, "better_by": diff.mean() if len(diff) else np.nan,
                          "ci_low": low, "ci_high": high, "n": len(diff)}
                         for (method, metric), diff, (low, high) in zip(keys, cells, intervals)],
                        columns=["method", "metric", "better_by", "ci_low", "ci_high", "n"])


NO_CELL = (np.nan, np.nan, np.nan, 0)  # a metric the two models were not both scored on


def paired_cells(paired: pd.DataFrame, method: str) -> dict[str, tuple[float, float, float, int]]:
    """One method's rows of `paired_differences` by metric: (better_by, ci_low, ci_high, n)."""
    return {r.metric: (r.better_by, r.ci_low, r.ci_high, int(r.n)) for r in paired[paired.method == method].itertuples()}


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "supports"
    if high < 0:
        return "contradicts"
    return "inconclusive"


def claim_table(result: InterpretResult, model: str, baseline: str, method: str,
                paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per metric: both means, the paired difference (positive = `model` better) and the verdict.
    `paired`: `paired_differences` of the two models, when the caller has it already."""
    paired = paired_differences(result.scores, model, baseline) if paired is None else paired
    cells = paired_cells(paired, method)
    s = result.summary[result.summary.method == method].set_index(["model", "metric"])["mean"]
    rows = []
    for metric in [m for m in METRICS if m in set(result.summary.metric)]:
        diff, low, high, n = cells.get(metric, NO_CELL)
        rows.append({"category": METRICS[metric].category, "metric": metric,
                     "direction": "↑" if METRICS[metric].higher_is_better else "↓",
                     baseline: s.get((baseline, metric), np.nan), model: s.get((model, metric), np.nan),
                     "better_by": diff, "ci_low": low, "ci_high": high, "n": int(n), "verdict": verdict(low, high)})
    return pd.DataFrame(rows)


def _markdown_table(table: pd.DataFrame, model: str, baseline: str) -> list[str]:
    rows = [[CLAIM_PARTS[category], f"{r['metric']} {r['direction']}", f"{r[baseline]:.3f}", f"{r[model]:.3f}",
             f"{r['better_by']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"**{r['verdict']}**"]
            for category in CATEGORIES for r in table[table.category == category].to_dict("records")]
    return markdown_table(["claim part", "metric", baseline, model, f"{model} better by [95% CI]", "verdict"], rows)


def method_counts(result: InterpretResult, model: str, baseline: str,
                  paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per saliency method, how many metrics support, contradict or leave open `model` over `baseline`."""
    paired = paired_differences(result.scores, model, baseline) if paired is None else paired
    rows = []
    for method in dict.fromkeys(result.summary.method):
        table = claim_table(result, model, baseline, method, paired)
        counts = table.verdict.value_counts()
        rows.append({"method": method, **{v: int(counts.get(v, 0)) for v in
                                          ("supports", "contradicts", "inconclusive")}})
    return pd.DataFrame(rows)


def interpretation_section(result: InterpretResult, regularized: str, baselines: list[str],
                           method: str = "gradient-logp") -> list[str]:
    """Markdown lines: per baseline, the claim table for the paper's own map (the input gradient), then the
    verdict counts for every method scored."""
    prov, summary = result.provenance, result.summary
    accuracy = summary.groupby("model").clean_accuracy.first()
    lines = [f"{prov['config']['n']} test images, {summary.method.nunique()} saliency methods, "
             f"{summary.metric.nunique()} metrics, {prov['device']}, {prov['seconds'] / 60:.0f} min "
             f"(`python -m gradviz interpret`). Clean accuracy on these images: "
             + ", ".join(f"{m} {a:.1%}" for m, a in accuracy.items()) + ".", ""]
    for baseline in baselines:
        if baseline not in set(summary.model) or regularized not in set(summary.model):
            continue
        paired = paired_differences(result.scores, regularized, baseline)
        table = claim_table(result, regularized, baseline, method, paired)
        lines += [f"#### {regularized} against {baseline}: {method}", "",
                  *_markdown_table(table, regularized, baseline), ""]
        counts = method_counts(result, regularized, baseline, paired)
        lines += [f"Every method, {regularized} against {baseline} (metrics that support / contradict / leave "
                  "open the claim): " + "; ".join(f"{r.method} {r.supports}/{r.contradicts}/{r.inconclusive}"
                                                  for r in counts.itertuples()) + ".", ""]
    return lines


def answer(counts: pd.DataFrame, model: str, baseline: str, method: str = "gradient-logp") -> str:
    """The page's one-sentence answer from `method_counts`: on how many metrics `model`'s maps are better or worse
    than `baseline`'s (paired 95% intervals apart from zero), for the paper's own map and over every method."""
    total = counts[["supports", "contradicts", "inconclusive"]].sum()
    own = counts[counts.method == method]
    lead = ""
    if not own.empty:
        row = own.iloc[0]
        lead = (f"With the input gradient ({method}), {model}'s maps are better than {baseline}'s on "
                f"**{row.supports}** of {row.supports + row.contradicts + row.inconclusive} metrics and worse on "
                f"**{row.contradicts}**; ")
    return (lead + f"over all {len(counts)} methods: better on {total.supports}, worse on {total.contradicts}, "
            f"open on {total.inconclusive} (paired 95% intervals).")
