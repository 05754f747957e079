"""The annotation curve drawn: accuracy without the shortcut against annotated images, one line per penalty, the
baselines as flat bands; plotly for the app, the same picture as a static SVG (matplotlib) for REPRODUCTION.md."""
from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go

from gradviz.evaluation.figures import house_style

PENALTY_COLOURS = {"rrr": "#0072B2", "rrr-g": "#D55E00", "counterexamples": "#009E73", "normal": "#7f7f7f",
                   "gradreg": "#CC79A7"}
LABELS = {"normal": "plain cross-entropy, no annotations", "gradreg": "Grad Reg (y), no annotations", "rrr": "RRR",
          "rrr-g": "RRR-G", "counterexamples": "counterexamples"}
METRIC_TITLES = {"shortcut_free_accuracy": "accuracy without the shortcut",
                 "wrong_region_share": "share of |gradient| on the swatch"}


def curve_points(record: dict, name: str, metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """x (annotated images), mean, low, high of one penalty, in the record's count order."""
    entries = [e for e in record["summary"] if e["curve"] == name]
    entries.sort(key=lambda e: e["images"])
    x = [e["images"] for e in entries]
    mean = [e[metric] for e in entries]
    low = [e[f"{metric}_interval"][0] for e in entries]
    high = [e[f"{metric}_interval"][1] for e in entries]
    return x, mean, low, high


def _error_bars(mean: list[float], low: list[float], high: list[float]) -> tuple[list[float], list[float]]:
    """(below, above) each mean, 0 where an interval is missing (one seed)."""
    return ([m - lo if not math.isnan(lo) else 0 for lo, m in zip(low, mean)],
            [h - m if not math.isnan(h) else 0 for h, m in zip(high, mean)])


def _span(record: dict) -> tuple[int, int]:
    images = [e["images"] for e in record["summary"] if not e["baseline"]]
    return min(images), max(images)


def curve_figure(record: dict, metric: str = "shortcut_free_accuracy") -> go.Figure:
    """Interactive: each penalty's mean with its interval as error bars, baselines as dashed lines."""
    fig = go.Figure()
    left, right = _span(record)
    for name in record["baselines"]:
        x, mean, _, _ = curve_points(record, name, metric)
        if mean:
            fig.add_trace(go.Scatter(x=[left, right], y=[mean[0]] * 2, mode="lines", name=LABELS.get(name, name),
                                     line={"dash": "dash", "color": PENALTY_COLOURS.get(name)}))
    for name in record["penalties"]:
        x, mean, low, high = curve_points(record, name, metric)
        lower, upper = _error_bars(mean, low, high)
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=LABELS.get(name, name),
                                 line={"color": PENALTY_COLOURS.get(name)},
                                 error_y={"type": "data", "array": upper, "arrayminus": lower}))
    fig.update_xaxes(type="log", title="annotated training images")
    fig.update_yaxes(title=METRIC_TITLES.get(metric, metric))
    return house_style(fig, 380, f"{record['dataset']}: how many annotations does it take?")


def write_curve_svg(record: dict, path: str | Path, metric: str = "shortcut_free_accuracy") -> Path:
    """The same picture as a static SVG (no browser needed), for the Markdown report."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    left, right = _span(record)
    for name in record["baselines"]:
        _, mean, _, _ = curve_points(record, name, metric)
        if mean:
            ax.hlines(mean[0], left, right, colors=PENALTY_COLOURS.get(name), linestyles="dashed",
                      label=LABELS.get(name, name))
    for name in record["penalties"]:
        x, mean, low, high = curve_points(record, name, metric)
        ax.errorbar(x, mean, yerr=list(_error_bars(mean, low, high)), marker="o", capsize=3, color=PENALTY_COLOURS.get(name),
                    label=LABELS.get(name, name))
    ax.set_xscale("log")
    ax.set_xlabel("annotated training images")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.set_title(f"{record['dataset']}: how many annotations does it take?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path
