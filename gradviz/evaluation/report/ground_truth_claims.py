"""Where the models look, against ground truth: Decoy MNIST's swatch and Block MNIST's signal block, scored by the
localisation metrics of an `interpret` run and compared model against model, paired by image (docs/REPRODUCTION.md,
"Ground truth")."""
from __future__ import annotations

import pandas as pd

from gradviz.data.ground_truth import EVIDENCE_INSIDE_MASK, MASK_MEANING
from gradviz.evaluation.report.interpretation_claims import NO_CELL, paired_cells, paired_differences, verdict
from gradviz.evaluation.report.tables import markdown_table
from gradviz.evaluation.runs.interpretation import InterpretResult

GROUND_TRUTH_METRICS = ("relevance-mass", "relevance-rank", "pointing-game")
# relevance-rank says nothing when the region is nearly the whole image (Decoy MNIST: K = 768 of 784 pixels)
METRICS_FOR = {"decoy-mnist": ("relevance-mass", "pointing-game"), "block-mnist": GROUND_TRUTH_METRICS,
               "decoy-fashion-mnist": ("relevance-mass", "pointing-game")}
# (model, baseline) by defense: does the first look more where the evidence is than the second?
COMPARISONS = {
    "decoy-mnist": (("gradreg", "normal"), ("rrr", "normal"), ("gradreg", "rrr")),
    "decoy-fashion-mnist": (("gradreg", "normal"), ("rrr", "normal"), ("gradreg", "rrr")),
    "block-mnist": (("gradreg", "normal"), ("advtrain", "normal"), ("gradreg", "advtrain")),
}
HEADLINE_METHOD = "gradient-logp"


def region_words(dataset: str) -> str:
    part, _ = MASK_MEANING[dataset]
    return f"on the {part}" if EVIDENCE_INSIDE_MASK[dataset] else f"off the {part}"


def _metrics(result: InterpretResult) -> list[str]:
    dataset = result.provenance["config"]["dataset"]
    return [m for m in METRICS_FOR.get(dataset, GROUND_TRUTH_METRICS) if m in set(result.summary.metric)]


def score_table(result: InterpretResult, method: str) -> list[str]:
    """Markdown: per model, each ground-truth metric's mean with its 95% interval, and accuracy on the images."""
    metrics = _metrics(result)
    summary = result.summary[(result.summary.method == method) & result.summary.metric.isin(metrics)]
    rows = []
    for model, group in summary.groupby("model", sort=False):
        cells = group.set_index("metric")
        rows.append([model, f"{group.clean_accuracy.iloc[0]:.1%}", *(
            f"{cells.at[m, 'mean']:.3f} [{cells.at[m, 'ci_low']:.3f}, {cells.at[m, 'ci_high']:.3f}]"
            for m in metrics)])
    return markdown_table(["model", "accuracy on these images", *(f"{m} ↑" for m in metrics)], rows)


def comparison_table(result: InterpretResult, dataset: str, method: str) -> pd.DataFrame:
    """One row per (comparison, metric): the paired mean difference (positive = the first model looks more where
    the evidence is), its 95% bootstrap interval and the verdict."""
    names = {card["defense"]: name for name, card in result.provenance["models"].items()}
    rows = []
    for model, baseline in COMPARISONS.get(dataset, ()):
        if model not in names or baseline not in names:
            continue
        paired = paired_differences(result.scores, names[model], names[baseline])
        cells = paired_cells(paired, method)
        for metric in _metrics(result):
            diff, low, high, n = cells.get(metric, NO_CELL)
            rows.append({"model": names[model], "baseline": names[baseline], "metric": metric, "better_by": diff,
                         "ci_low": low, "ci_high": high, "n": int(n), "verdict": verdict(low, high)})
    return pd.DataFrame(rows)


def ground_truth_section(result: InterpretResult) -> list[str]:
    """Markdown lines for one dataset: what the metrics measure here, the scores per model for the input
    gradient, the paired comparisons, and how every saliency method votes."""
    prov = result.provenance
    dataset = prov["config"]["dataset"]
    where = region_words(dataset)
    meaning = {"relevance-mass": f"share of |map| {where}",
               "relevance-rank": f"share of the top-K pixels {where} (K = the region's size)",
               "pointing-game": f"whether the largest |map| lies {where}"}
    lines = [f"### {dataset}", "",
             f"{prov['config']['n']} test images, {prov['device']}, {prov['seconds']:.0f} s. Localisation target: "
             f"{prov.get('localisation_target', where)}. " + "; ".join(f"{m} = {meaning[m]}" for m in _metrics(result))
             + ". Higher is better throughout.", "",
             f"Input gradient ({HEADLINE_METHOD}):", "", *score_table(result, HEADLINE_METHOD), ""]
    if prov.get("follows_swatch"):
        lines += ["Reads the swatch: among these images whose swatch codes another class than the digit, the share "
                  "each model assigns to the swatch's class (0 = reads the digit, 1 = reads only the swatch): "
                  + ", ".join(f"{m} {v:.1%}" for m, v in prov["follows_swatch"].items()) + ".", ""]
    table = comparison_table(result, dataset, HEADLINE_METHOD)
    if not table.empty:
        lines += markdown_table(
            ["model", "than", "metric", f"looks more {where} by [95% CI]", "verdict"],
            ([r.model, r.baseline, r.metric, f"{r.better_by:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]",
              f"**{r.verdict}**"] for r in table.itertuples()))
        lines.append("")
    votes = []
    for method in dict.fromkeys(result.summary.method):
        counts = comparison_table(result, dataset, method).groupby(["model", "baseline"], sort=False).verdict
        votes += [f"{method}: " + ", ".join(
            f"{m} vs {b} {int((v == 'supports').sum())}/{int((v == 'contradicts').sum())}" for (m, b), v in counts)]
    if votes:
        lines += ["Every method (metrics where the first model looks more / less " + where + "): "
                  + "; ".join(votes) + ".", ""]
    return lines
