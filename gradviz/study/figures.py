"""The Researcher page's figures, in the house style of every other gradviz figure (gradviz.evaluation.figures):
ratings with their bootstrap intervals, ratings against perturbation size, and the power curve."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from gradviz.evaluation.figures import PALETTE, house_style, model_colours


def _error_y(centre: pd.Series | list, low: pd.Series | list, high: pd.Series | list) -> dict:
    centre, low, high = (pd.Series(list(v), dtype=float) for v in (centre, low, high))
    return dict(type="data", symmetric=False, array=list(high - centre), arrayminus=list(centre - low))


def interval_bars(table: pd.DataFrame, title: str) -> go.Figure:
    """One bar per source model (`source_model`, `mean`) with its interval (`ci_low`, `ci_high`)."""
    fig = go.Figure(go.Bar(x=table.source_model, y=table["mean"], marker_color=PALETTE[0],
                           error_y=_error_y(table["mean"], table.ci_low, table.ci_high)))
    return house_style(fig, 320, title, legend=None)


def ratings_by_size(ratings: pd.DataFrame) -> go.Figure:
    """Each rating against its stimulus's L2 perturbation, coloured by source model."""
    colours = model_colours([str(m) for m in dict.fromkeys(ratings["source_model"].dropna())])
    fig = px.strip(ratings, x="l2", y="rating", color="source_model", color_discrete_map=colours)
    fig.update_xaxes(title_text="L2 size of the perturbation")
    return house_style(fig, 320, "Ratings against perturbation size")


def power_curve(curve: list[dict], target: float) -> go.Figure:
    """Estimated power per number of participants (`n`, `power`, `ci_low`, `ci_high`), the target as a line."""
    power = [r["power"] for r in curve]
    fig = go.Figure(go.Scatter(x=[r["n"] for r in curve], y=power, mode="lines+markers", marker_color=PALETTE[0],
                               error_y=_error_y(power, [r["ci_low"] for r in curve], [r["ci_high"] for r in curve])))
    fig.add_hline(y=target, line_dash="dot")
    fig.update_layout(xaxis_title="participants", yaxis_title="power")
    return house_style(fig, 320, "Simulated power", legend=None)
