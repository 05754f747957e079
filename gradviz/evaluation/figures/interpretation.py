"""Figures of explanation quality: the model × method × metric heatmap, a radar over categories, and the sanity
check's similarity curves. The Interpretability and Sanity checks pages and the HTML report draw the same ones."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradviz.attribution.metrics import CATEGORIES, REGISTRY
from gradviz.evaluation.figures import PALETTE, house_style, model_colours, wrap_label


def goodness(summary: pd.DataFrame) -> pd.Series:
    """Each row's mean rescaled per metric to 0 (worst of the table) … 1 (best), whichever way is good."""
    by_metric = summary.groupby("metric", sort=False)["mean"]
    low, high = by_metric.transform("min"), by_metric.transform("max")
    span = ((summary["mean"] - low) / (high - low)).where(high > low, 0.5)
    return span.where(summary["higher_is_better"].astype(bool), 1 - span)


def _metric_order(summary: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(summary["metric"]))
    known = [m for m in REGISTRY if m in present]
    return known + [m for m in present if m not in known]


SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star"]
DASHES = ["solid", "dash", "dot", "dashdot"]
CELL_FONT = 13  # pixels: a cell's mean stays readable at the page's width


def score_heatmap(summary: pd.DataFrame) -> go.Figure:
    """Rows: model · method; columns: metrics grouped by category. Colour: 1 = best in its column; text: the mean,
    large enough to read (its 95% interval in the hover: two lines of small print per cell were unreadable)."""
    frame = summary.assign(goodness=goodness(summary), row=summary["model"] + " · " + summary["method"])
    metrics = _metric_order(frame)
    rows = list(dict.fromkeys(frame["row"]))
    colour = frame.pivot_table(index="row", columns="metric", values="goodness", sort=False).reindex(rows)[metrics]
    indexed = frame.set_index(["row", "metric"])
    cells = [[_cell_text(indexed, r, m) for m in metrics] for r in rows]
    labels = [f"{m}<br>({'↑' if REGISTRY[m].higher_is_better else '↓'} {REGISTRY[m].category})"
              if m in REGISTRY else m for m in metrics]
    fig = go.Figure(go.Heatmap(z=colour.to_numpy(), x=labels, y=rows, text=[[c[0] for c in r] for r in cells],
                               customdata=[[c[1] for c in r] for r in cells], texttemplate="%{text}",
                               colorscale="Viridis", zmin=0, zmax=1, textfont=dict(size=CELL_FONT),
                               colorbar=dict(title="best = 1", thickness=12),
                               hovertemplate="%{y}<br>%{x}<br>mean %{text} %{customdata}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return house_style(fig, 140 + 34 * len(rows), "Explanation quality (colour: rank within each metric)", None)


def _cell_text(indexed: pd.DataFrame, row: str, metric: str) -> tuple[str, str]:
    """(the mean, its 95% interval) as a cell shows them."""
    if (row, metric) not in indexed.index:
        return "", ""
    r = indexed.loc[(row, metric)]
    if not np.isfinite(r["mean"]):
        return "—", ""
    return f"{r['mean']:.2f}", f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def category_radar(summary: pd.DataFrame, method: str) -> go.Figure:
    """One trace per model: its mean goodness per category for one saliency method (1 = best of the table)."""
    frame = summary.assign(goodness=goodness(summary))
    frame = frame[frame["method"] == method]
    categories = [c for c in CATEGORIES if c in set(frame["category"])]
    fig = go.Figure()
    colours = model_colours(list(dict.fromkeys(frame["model"])))
    for model, block in frame.groupby("model", sort=False):
        values = [float(block[block["category"] == c]["goodness"].mean()) for c in categories]
        fig.add_trace(go.Scatterpolar(r=[*values, values[0]], theta=[*categories, categories[0]], name=model,
                                      line=dict(color=colours[model])))
    fig.update_layout(polar=dict(radialaxis=dict(range=[0, 1])))
    return house_style(fig, 420, f"Categories, {method} (1 = best in the table)", "right")


def sanity_curves(layers: list[str], similarities: dict[str, np.ndarray], threshold: float) -> go.Figure:
    """Mean similarity to the trained model's maps after each cascading step, one line per method, with the
    flagging threshold."""
    fig = go.Figure()
    for i, (method, sims) in enumerate(similarities.items()):
        mean = np.nanmean(sims, axis=1)
        # colour, marker and dash all differ: two methods whose curves coincide (IG and Input×Gradient on a ReLU
        # net) stay visible as two
        fig.add_trace(go.Scatter(x=["trained", *layers], y=[1.0, *mean], mode="lines+markers", name=method,
                                 line=dict(color=PALETTE[i % len(PALETTE)], dash=DASHES[i % len(DASHES)]),
                                 marker=dict(symbol=SYMBOLS[i % len(SYMBOLS)], size=9)))
    fig.add_hline(y=threshold, line_dash="dot", annotation_text="flag above (mean over the cascade)",
                  annotation_position="top left")
    fig.update_yaxes(title="rank correlation of |map|", range=[-0.2, 1.05])
    fig.update_xaxes(title="randomised down to layer")
    return house_style(fig, 360, "Cascading randomisation (Adebayo et al. 2018)")


def sanity_maps(maps: dict[str, np.ndarray], layers: list[str]) -> go.Figure:
    """One row per method: |map| of one image for the trained model then after each step, each on its own
    scale (a shape comparison: magnitudes change with random weights)."""
    methods = list(maps)
    columns = ["trained", *layers]
    fig = make_subplots(rows=len(methods), cols=len(columns), horizontal_spacing=0.01, vertical_spacing=0.03,
                        column_titles=[wrap_label(c, 12) for c in columns], row_titles=methods)
    for r, method in enumerate(methods, 1):
        for c, image in enumerate(maps[method], 1):
            a = np.abs(image)
            scale = a.max() if a.max() > 0 else 1.0
            fig.add_trace(go.Heatmap(z=a / scale, colorscale="Greys", zmin=0, zmax=1, showscale=False,
                                     hoverinfo="skip"), r, c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    return house_style(fig, 60 + 110 * len(methods), None, None)
