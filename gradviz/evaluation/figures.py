"""Plotly figures of evaluation results; the HTML report and the dashboard draw the same ones."""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from gradviz.attacks.registry import attack_title
from gradviz.evaluation.paper import PAPER_CURVES_FROM_NORMAL

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]


def _colours(names: list[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def accuracy_curves(rows: pd.DataFrame, attack: str, paper_overlay: bool = False) -> go.Figure:
    """One panel per source model: accuracy vs ε of every evaluated model (the paper's figure)."""
    rows = rows[rows["attack"].eq(attack)]
    sources = list(dict.fromkeys(rows.source))
    colours = _colours(list(dict.fromkeys(rows.target)))
    cols = min(3, len(sources))
    fig = make_subplots(rows=math.ceil(len(sources) / cols), cols=cols, shared_yaxes=True,
                        subplot_titles=[f"{attack_title(attack)} made on {s}" for s in sources])
    for i, source in enumerate(sources):
        r, c = divmod(i, cols)
        for target, group in rows[rows.source == source].groupby("target", sort=False):
            group = group.sort_values("eps")
            fig.add_trace(go.Scatter(
                x=group.eps, y=group.accuracy, name=target, legendgroup=target, showlegend=i == 0,
                line=dict(color=colours[target], width=3 if target == source else 1.5,
                          dash="solid" if target == source else "dot"),
                error_y=dict(type="data", symmetric=False, array=group.ci_high - group.accuracy,
                             arrayminus=group.accuracy - group.ci_low, thickness=1, width=2),
            ), row=r + 1, col=c + 1)
        paper = PAPER_CURVES_FROM_NORMAL.get(attack, {}) if paper_overlay and source.endswith("-normal") else {}
        for target, values in paper.items():
            ours = next((t for t in colours if t.endswith(f"-{target}")), None)
            fig.add_trace(go.Scatter(x=list(values), y=list(values.values()), mode="markers",
                                     marker=dict(symbol="x", size=8, color=colours.get(ours, "grey")),
                                     name=f"paper: {target}", legendgroup="paper", showlegend=i == 0),
                          row=r + 1, col=c + 1)
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy", col=1)
    fig.update_xaxes(title_text="ε")
    fig.update_layout(height=320 * math.ceil(len(sources) / cols), margin=dict(t=40, b=30))
    return fig


def matrix_at(rows: pd.DataFrame, attack: str, eps: float) -> pd.DataFrame:
    """Source × target accuracy matrix of one attack at the ε nearest to `eps`."""
    rows = rows[rows["attack"].eq(attack)]
    nearest = min(rows.eps.unique(), key=lambda e: abs(e - eps))
    sub = rows[rows.eps == nearest]
    order = list(dict.fromkeys(rows.source))
    return sub.pivot(index="source", columns="target", values="accuracy").reindex(index=order, columns=order)


def transfer_heatmap(rows: pd.DataFrame, attack: str, eps: float) -> go.Figure:
    """The matrix as a heatmap; the diagonal is white-box."""
    m = matrix_at(rows, attack, eps)
    fig = go.Figure(go.Heatmap(z=m.values, x=m.columns, y=m.index, zmin=0, zmax=1, colorscale="Viridis",
                               text=[[f"{v:.2f}" for v in row] for row in m.values], texttemplate="%{text}",
                               colorbar=dict(title="accuracy")))
    fig.update_layout(title=f"{attack_title(attack)} at ε = {eps:g}: rows made on, columns evaluated on",
                      xaxis_title="evaluated on (target)", yaxis_title="made on (source)",
                      yaxis_autorange="reversed", height=420)
    return fig


def whitebox_vs_transfer(rows: pd.DataFrame, attack: str) -> pd.DataFrame:
    """Per target and ε: white-box accuracy and mean accuracy on examples transferred from the others."""
    rows = rows[rows["attack"].eq(attack)]
    white = rows[rows.whitebox].groupby(["target", "eps"]).accuracy.mean().rename("whitebox")
    transfer = rows[~rows.whitebox].groupby(["target", "eps"]).accuracy.mean().rename("mean_transfer")
    return pd.concat([white, transfer], axis=1).reset_index()


def whitebox_transfer_figure(rows: pd.DataFrame, attack: str) -> go.Figure:
    table = whitebox_vs_transfer(rows, attack)
    colours = _colours(list(dict.fromkeys(table.target)))
    fig = go.Figure()
    for target, g in table.groupby("target", sort=False):
        fig.add_trace(go.Scatter(x=g.eps, y=g.whitebox, name=f"{target} white-box",
                                 line=dict(color=colours[target])))
        fig.add_trace(go.Scatter(x=g.eps, y=g.mean_transfer, name=f"{target} transfer (mean)",
                                 line=dict(color=colours[target], dash="dot")))
    fig.update_layout(title=f"{attack_title(attack)}: white-box vs mean transferred accuracy", xaxis_title="ε",
                      yaxis_title="accuracy", yaxis_range=[0, 1.02], height=420)
    return fig


def norm_boxplot(norms: pd.DataFrame) -> go.Figure:
    """Distribution of input-gradient norms per model, on one log scale (the paper's box plots)."""
    fig = go.Figure()
    for kind, g in norms.groupby("kind", sort=False):
        fig.add_trace(go.Box(x=g.model, y=g.norm.clip(lower=1e-12), name=kind, boxpoints=False))
    fig.update_layout(boxmode="group", yaxis_type="log", yaxis_title="‖∇ₓ‖₂ (log scale)", height=420,
                      title="Input-gradient norms: " + ", ".join(norms["kind"].unique()))
    return fig


def deletion_figure(curves: pd.DataFrame) -> go.Figure:
    """Accuracy as the most salient pixels are deleted; a steeper fall means a more faithful saliency map."""
    fig = go.Figure()
    for model, g in curves.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=g.fraction, y=g.accuracy, name=model, mode="lines+markers"))
    fig.update_layout(title="Deletion curves (input-gradient saliency)", xaxis_title="share of pixels deleted",
                      yaxis_title="accuracy", yaxis_range=[0, 1.02], height=380)
    return fig


DIVERGING = "RdBu_r"  # ColorBrewer RdBu: colour-blind safe; red = positive, blue = negative
SEQUENTIAL = "Viridis"


def saliency_grid(image: np.ndarray, maps: list[np.ndarray], titles: list[str], signed: bool,
                  scales: list[float], overlay: bool = False) -> go.Figure:
    """The input image then one saliency map per model, side by side, each titled with its scale."""
    n = len(maps) + 1
    fig = make_subplots(rows=1, cols=n, subplot_titles=["input", *[f"{t}<br><sup>full colour = {s:.2g}</sup>"
                                                                   for t, s in zip(titles, scales)]],
                        horizontal_spacing=0.01)
    fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False, zmin=0, zmax=1,
                             hovertemplate="pixel %{y},%{x}: %{z:.2f}<extra></extra>"), row=1, col=1)
    for i, m in enumerate(maps, start=2):
        if overlay:
            fig.add_trace(go.Heatmap(z=image, colorscale="gray", showscale=False, zmin=0, zmax=1, hoverinfo="skip"),
                          row=1, col=i)
        fig.add_trace(go.Heatmap(z=m, coloraxis="coloraxis", opacity=0.65 if overlay else 1.0,
                                 hovertemplate="pixel %{y},%{x}: %{z:.3f}<extra></extra>"), row=1, col=i)
    fig.update_layout(coloraxis=dict(colorscale=DIVERGING if signed else SEQUENTIAL, cmin=-1 if signed else 0,
                                     cmax=1, colorbar=dict(title="relative", thickness=12)),
                      height=260, margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    for i in range(2, n + 1):
        fig.update_yaxes(scaleanchor=f"x{i}", row=1, col=i)
    return fig


def probability_bars(probs: dict[str, np.ndarray], class_names: list[str]) -> go.Figure:
    """Class probabilities of each model, grouped by class."""
    colours = _colours(list(probs))
    fig = go.Figure([go.Bar(x=class_names, y=p, name=n, marker_color=colours[n]) for n, p in probs.items()])
    fig.update_layout(barmode="group", yaxis_range=[0, 1], yaxis_title="probability", height=260,
                      margin=dict(l=10, r=10, t=20, b=10), legend=dict(orientation="h"))
    return fig


def image_figure(images: list[np.ndarray], titles: list[str], signed_last: bool = False) -> go.Figure:
    """A row of grey images (the last one signed, e.g. a perturbation, when asked)."""
    fig = make_subplots(rows=1, cols=len(images), subplot_titles=titles, horizontal_spacing=0.02)
    for i, img in enumerate(images, start=1):
        signed = signed_last and i == len(images)
        bound = float(abs(img).max()) or 1.0
        fig.add_trace(go.Heatmap(z=img, colorscale=DIVERGING if signed else "gray", showscale=signed,
                                 zmin=-bound if signed else 0, zmax=bound if signed else 1,
                                 hovertemplate="%{z:.3f}<extra></extra>"), row=1, col=i)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def _png_uri(image: np.ndarray) -> str:
    """An image in [0, 1] as an 8-bit grey PNG data URI: a few kB in the page where a heatmap sends every value."""
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def target_grid_figure(mosaics: dict[str, np.ndarray], cell_text: dict[str, list[list[str]]],
                       row_names: list[str], column_names: list[str], cell: int = 28, gap: int = 2) -> go.Figure:
    """Target grids side by side: rows are true classes, columns target classes; hovering a cell tells its story
    (one invisible marker per cell carries the text, so the figure stays small whatever the text)."""
    names = list(mosaics)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.02)
    for i, name in enumerate(names, start=1):
        fig.add_trace(go.Image(source=_png_uri(mosaics[name]), hoverinfo="skip"), row=1, col=i)
        text = cell_text[name]
        fig.add_trace(go.Scatter(x=[c * (cell + gap) + cell / 2 for row in text for c in range(len(row))],
                                 y=[r * (cell + gap) + cell / 2 for r, row in enumerate(text) for _ in row],
                                 hovertext=[t for row in text for t in row], hoverinfo="text", mode="markers",
                                 marker=dict(size=14, opacity=0), showlegend=False), row=1, col=i)
        centres = [k * (cell + gap) + cell / 2 for k in range(len(column_names))]
        fig.update_xaxes(tickvals=centres, ticktext=column_names, row=1, col=i,
                         title_text="target class" if i == 1 else None)
        fig.update_yaxes(tickvals=[k * (cell + gap) + cell / 2 for k in range(len(row_names))],
                         ticktext=row_names if i == 1 else [""] * len(row_names), row=1, col=i)
    fig.update_yaxes(title_text="true class", row=1, col=1)
    fig.update_layout(height=400 if len(names) > 2 else 500, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def iteration_path_figure(target_prob: dict[str, np.ndarray], target_name: str, source: str) -> go.Figure:
    """Each model's probability of the target class along an iterated attack made on `source`."""
    colours = _colours(list(target_prob))
    fig = go.Figure([go.Scatter(y=p, mode="lines+markers", name=n + (" (white-box)" if n == source else ""),
                                line=dict(color=colours[n], width=3 if n == source else 2)) for n, p in target_prob.items()])
    fig.update_layout(xaxis_title="iteration", yaxis_title=f"p({target_name})", yaxis_range=[0, 1], height=280,
                      margin=dict(l=10, r=10, t=20, b=10), legend=dict(orientation="h"))
    return fig
