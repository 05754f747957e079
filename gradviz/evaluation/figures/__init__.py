"""Plotly figures of evaluation results; the HTML report and the dashboard draw the same ones."""
from __future__ import annotations

import base64
import hashlib
import io
import math
import os

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from gradviz.attacks.registry import attack_title
from gradviz.evaluation.runs.paper import PAPER_CURVES_FROM_NORMAL

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]


LEGEND_ABOVE = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", title_text="")
LEGEND_RIGHT = dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top", title_text="")


# A model's colour follows its defense, read from its name (the zoo's names, and any user name ending in one), so
# mnist-gradreg is the same vermillion on every figure of every page and report; longer names match first.
DEFENSE_COLOURS = {"gradreg-advtrain": PALETTE[5], "gradreg-uniform": PALETTE[4], "gradreg": PALETTE[1],
                   "advtrain": PALETTE[2], "distilled": PALETTE[3], "normal": PALETTE[0], "rrr": PALETTE[6]}


def _preferred(name: str) -> tuple[str | None, bool]:
    """The colour of the defense `name` contains, and whether its name ends with it (the zoo's dataset-defense)."""
    parts = name.split("-")
    for defense, colour in DEFENSE_COLOURS.items():
        words = defense.split("-")
        at = [k for k in range(len(parts)) if parts[k:k + len(words)] == words]
        if at:
            return colour, at[-1] + len(words) == len(parts)
    return None, False


def model_colours(names: list[str]) -> dict[str, str]:
    """One colour per model, the same whatever order a figure lists them in: its defense's colour
    (DEFENSE_COLOURS) unless a model earlier by name took it, else the first free one after a start given by the
    name's hash. So two figures of one page (the same models) agree, and the zoo's defenses keep theirs."""
    chosen: dict[str, str] = {}
    for name in sorted(set(names), key=lambda n: (_preferred(n)[0] is None, not _preferred(n)[1], len(n), n)):
        wanted = _preferred(name)[0]
        if wanted is not None and wanted not in chosen.values():
            chosen[name] = wanted
            continue
        start = int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(PALETTE)
        ring = PALETTE[start:] + PALETTE[:start]
        chosen[name] = next((c for c in ring if c not in chosen.values()), ring[0])
    return {n: chosen[n] for n in names}


def _colours(names: list[str]) -> dict[str, str]:
    return model_colours(names)


def wrap_label(text: str, width: int = 16) -> str:
    """A long model name broken at its hyphens into lines of about `width` characters (plotly's <br>), so titles
    and tick labels of several models side by side never run into each other."""
    lines, line = [], ""
    for part in text.replace("-", "-\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "<br>".join([*lines, line])


def without_common_prefix(names: list[str]) -> tuple[list[str], str]:
    """Names less the hyphen-ended prefix they all share ("mnist-"), and that prefix: tick labels of several
    models side by side stay short enough not to run into each other."""
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[:prefix.rfind("-") + 1]
    if any(n == prefix or not n[len(prefix):] for n in names):
        prefix = ""
    return [n[len(prefix):] for n in names], prefix


def house_style(fig: go.Figure, height: int, title: str | None = None, legend: str | None = "above") -> go.Figure:
    """The layout rules every gradviz figure follows: the title at the top left, in its own space; the legend
    outside the plotting area (above it, or to the right of figures with subplot titles), never over data, tick
    labels or axis titles; margins that grow to fit long tick labels; subplot titles in a smaller font."""
    # Subplot titles sit above their panels, where automargin does not look: leave room for their lines.
    lines = max((a.text.count("<br>") + 1 for a in fig.layout.annotations if a.yref and a.yref.endswith("paper")),
                default=0)
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=10 + 18 * lines, b=10),
        showlegend=legend is not None, legend=LEGEND_RIGHT if legend == "right" else LEGEND_ABOVE,
        title=dict(text=title or "", x=0, xanchor="left", yref="container", y=0.98, yanchor="top",
                   automargin=True, font=dict(size=14)),
    )
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    fig.update_annotations(font=dict(size=12))
    return fig


def _square_pixels(fig: go.Figure, panels: int) -> None:
    """Images keep square pixels in every panel (no stretching to the panel's shape)."""
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed")
    for i in range(1, panels + 1):
        fig.update_yaxes(scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)


def accuracy_curves(rows: pd.DataFrame, attack: str, paper_overlay: bool = False) -> go.Figure:
    """One panel per source model: accuracy vs ε of every evaluated model (the paper's figure)."""
    rows = rows[rows["attack"].eq(attack)]
    sources = list(dict.fromkeys(rows.source))
    colours = _colours(list(dict.fromkeys(rows.target)))
    cols = min(3, len(sources))
    fig = make_subplots(rows=math.ceil(len(sources) / cols), cols=cols, shared_yaxes=True,
                        subplot_titles=[f"{attack_title(attack)} made on {wrap_label(s, 28)}" for s in sources])
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
    return house_style(fig, 320 * math.ceil(len(sources) / cols), legend="right")


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
    targets, prefix = without_common_prefix(list(m.columns))
    fig = go.Figure(go.Heatmap(z=m.values, x=[wrap_label(c, 12) for c in targets], y=list(m.index), zmin=0, zmax=1,
                               colorscale="Viridis", text=[[f"{v:.2f}" for v in row] for row in m.values],
                               texttemplate="%{text}", colorbar=dict(title="accuracy", thickness=12)))
    fig.update_layout(xaxis_title=f"evaluated on (target{', ' + prefix + '…' if prefix else ''})",
                      yaxis_title="made on (source)", yaxis_autorange="reversed",
                      xaxis_tickangle=0, xaxis_automargin=True)  # wrapped, not rotated: they never overlap
    return house_style(fig, 460, f"{attack_title(attack)} at ε = {eps:g}<br><sup>rows made on, columns evaluated "
                                 "on; the diagonal is white-box</sup>", legend=None)


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
    fig.update_layout(xaxis_title="ε", yaxis_title="accuracy", yaxis_range=[0, 1.02])
    return house_style(fig, 460, f"{attack_title(attack)}: white-box vs mean transferred accuracy", legend="right")


def norm_boxplot(norms: pd.DataFrame) -> go.Figure:
    """Distribution of input-gradient norms per model, on one log scale (the paper's box plots)."""
    fig = go.Figure()
    for kind, g in norms.groupby("kind", sort=False):
        fig.add_trace(go.Box(x=g.model, y=g.norm.clip(lower=1e-12), name=kind, boxpoints=False))
    fig.update_layout(boxmode="group", yaxis_type="log", yaxis_title="‖∇ₓ‖₂ (log scale)")
    return house_style(fig, 440, "Input-gradient norms: " + ", ".join(norms["kind"].unique()))


def deletion_figure(curves: pd.DataFrame) -> go.Figure:
    """Accuracy as the most salient pixels are deleted; a steeper fall means a more faithful saliency map."""
    fig = go.Figure()
    for model, g in curves.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=g.fraction, y=g.accuracy, name=model, mode="lines+markers"))
    fig.update_layout(xaxis_title="share of pixels deleted", yaxis_title="accuracy", yaxis_range=[0, 1.02])
    return house_style(fig, 400, "Deletion curves (input-gradient saliency)")


DIVERGING = "RdBu_r"  # ColorBrewer RdBu: colour-blind safe; red = positive, blue = negative
SEQUENTIAL = "Viridis"


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) around a mask's pixels in heatmap coordinates: the outline of a swatch or block."""
    rows, cols = np.nonzero(mask)
    return cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5


def display(x) -> np.ndarray:
    """One image as a figure shows it: [H, W] grey or [H, W, 3] colour in [0, 1], from a tensor or array
    [1, C, H, W] or [C, H, W]."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    arr = arr[0] if arr.ndim == 4 else arr
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def _image_trace(image: np.ndarray, hover: bool = True):
    """A grey image as a grey heatmap (its values on hover), a colour one as an RGB image."""
    if image.ndim == 3:
        return go.Image(z=np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8), hoverinfo="skip" if not hover else None)
    return go.Heatmap(z=image, colorscale="gray", showscale=False, zmin=0, zmax=1,
                      **({"hovertemplate": "pixel %{y},%{x}: %{z:.2f}<extra></extra>"} if hover else {"hoverinfo": "skip"}))


def saliency_grid(image: np.ndarray, maps: list[np.ndarray], titles: list[str], signed: bool,
                  scales: list[float], overlay: bool = False, outline: np.ndarray | None = None) -> go.Figure:
    """The input image then one saliency map per model, side by side, each titled with its scale; `outline`
    (a ground-truth mask [H, W]) is drawn as a box on every panel."""
    n = len(maps) + 1
    fig = make_subplots(rows=1, cols=n, subplot_titles=["input", *[f"{wrap_label(t)}<br><sup>full colour = {s:.2g}"
                                                                   "</sup>" for t, s in zip(titles, scales)]],
                        horizontal_spacing=0.015)
    fig.add_trace(_image_trace(image), row=1, col=1)
    for i, m in enumerate(maps, start=2):
        if overlay:
            fig.add_trace(_image_trace(image, hover=False), row=1, col=i)
        fig.add_trace(go.Heatmap(z=m, coloraxis="coloraxis", opacity=0.65 if overlay else 1.0,
                                 hovertemplate="pixel %{y},%{x}: %{z:.3f}<extra></extra>"), row=1, col=i)
    if outline is not None and outline.any():
        x0, y0, x1, y1 = mask_box(outline)
        for i in range(1, n + 1):
            fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color="#00c853", width=2),
                          row=1, col=i)
    fig.update_layout(coloraxis=dict(colorscale=DIVERGING if signed else SEQUENTIAL, cmin=-1 if signed else 0,
                                     cmax=1, colorbar=dict(title="relative", thickness=12)))
    house_style(fig, 330 if image.shape[0] <= image.shape[1] else 480, legend=None)
    _square_pixels(fig, n)
    return fig


def probability_bars(probs: dict[str, np.ndarray], class_names: list[str]) -> go.Figure:
    """Class probabilities of each model, grouped by class."""
    colours = _colours(list(probs))
    fig = go.Figure([go.Bar(x=class_names, y=p, name=n, marker_color=colours[n]) for n, p in probs.items()])
    fig.update_layout(barmode="group", yaxis_range=[0, 1], yaxis_title="probability")
    return house_style(fig, 300)


def image_figure(images: list[np.ndarray], titles: list[str], signed_last: bool = False) -> go.Figure:
    """A row of images, grey or colour (the last one signed, e.g. a perturbation, when asked: a colour one is shown
    by its channel of largest |value| at each pixel)."""
    fig = make_subplots(rows=1, cols=len(images), subplot_titles=titles, horizontal_spacing=0.02)
    for i, img in enumerate(images, start=1):
        signed = signed_last and i == len(images)
        if not signed and img.ndim == 3:
            fig.add_trace(_image_trace(img), row=1, col=i)
            continue
        if img.ndim == 3:
            img = np.take_along_axis(img, np.abs(img).argmax(2)[..., None], 2)[..., 0]
        bound = float(abs(img).max()) or 1.0
        fig.add_trace(go.Heatmap(z=img, colorscale=DIVERGING if signed else "gray", showscale=signed,
                                 zmin=-bound if signed else 0, zmax=bound if signed else 1,
                                 hovertemplate="%{z:.3f}<extra></extra>"), row=1, col=i)
    house_style(fig, 260, legend=None)
    _square_pixels(fig, len(images))
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
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[wrap_label(n, 28) for n in names],
                        horizontal_spacing=0.02)
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
    return house_style(fig, 420 if len(names) > 2 else 500, legend=None)


def iteration_path_figure(target_prob: dict[str, np.ndarray], target_name: str, source: str) -> go.Figure:
    """Each model's probability of the target class along an iterated attack made on `source`."""
    colours = _colours(list(target_prob))
    fig = go.Figure([go.Scatter(y=p, mode="lines+markers", name=n + (" (white-box)" if n == source else ""),
                                line=dict(color=colours[n], width=3 if n == source else 2)) for n, p in target_prob.items()])
    fig.update_layout(xaxis_title="iteration", yaxis_title=f"p({target_name})", yaxis_range=[0, 1])
    return house_style(fig, 300)


TRAINING_STATS = {"loss": "loss", "ce": "cross-entropy", "penalty": "gradient penalty", "acc": "batch accuracy"}


def training_curves(history: pd.DataFrame, window: int = 10) -> go.Figure | None:
    """A run's per-step statistics (smoothed over `window` steps), one panel each; None until there are two steps
    to draw a line through."""
    if len(history) < 2:
        return None
    smooth = history.set_index("step")[list(TRAINING_STATS)].rolling(window, min_periods=1).mean()
    fig = make_subplots(rows=1, cols=len(TRAINING_STATS), subplot_titles=list(TRAINING_STATS.values()),
                        horizontal_spacing=0.06)
    for i, key in enumerate(TRAINING_STATS, start=1):
        fig.add_trace(go.Scatter(x=smooth.index, y=smooth[key], mode="lines", line=dict(color=PALETTE[0]),
                                 name=TRAINING_STATS[key]), row=1, col=i)
    fig.update_xaxes(title_text="step")
    return house_style(fig, 280, legend=None)


def saliency_overlay(image: np.ndarray, saliency: np.ndarray, scale: int = 10) -> np.ndarray:
    """An RGB picture [H·scale, W·scale, 3] (uint8) of `image` ([H, W] grey or [H, W, 3], in [0, 1]) with |saliency|
    (scaled by its own maximum) laid over it in yellow: what a person draws on when annotating."""
    base = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    heat = np.abs(np.asarray(saliency, dtype=np.float64))
    heat = heat / heat.max() if heat.max() > 0 else heat
    weight = 0.7 * heat[..., None]
    picture = np.clip((1 - weight) * base + weight * np.array([1.0, 0.85, 0.0]), 0, 1)
    big = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    return np.rint(big * 255).astype(np.uint8)
