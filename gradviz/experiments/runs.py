"""Experiment runs as tables and curves: what the Experiments page shows, read from the results folder only.

Every trial leaves a folder (see gradviz.experiments.trials), so runs are listed and plotted the same whether they run
now, finished last week, failed, or were cut off and wait to be resumed, and whether Ray is up or not.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from gradviz.evaluation.figures import house_style
from gradviz.experiments.plan import Layout, default_results
from gradviz.experiments.trials import read_metrics, run_state
from gradviz.nets.cards import card_fields, refuse_zoo_name
from gradviz.nets.store import load_model, save_model
from gradviz.paths import user_model_dir

RUN_COLUMNS = ["name", "dataset", "state", "step", "steps", "sweep", "lam", "seed", "accuracy", "updated"]
METRIC_LABELS = {"train_loss": "training loss", "train_ce": "training cross-entropy",
                 "accuracy": "held-out accuracy", **{f"transfer@{e:g}": f"transferred FGSM accuracy, ε = {e:g}"
                                                     for e in (0.1, 0.2, 0.3, 0.4, 0.5)}}


def _trial_folders(results: Path) -> list[Path]:
    return sorted(p for p in results.glob("*/trials/*") if p.is_dir())


def list_runs(results: str | Path | None = None) -> pd.DataFrame:
    """One row per trial under the results folder, newest activity first."""
    rows = []
    for folder in _trial_folders(Path(results or default_results())):
        dataset_root = folder.parent.parent
        state = run_state(folder, Layout(dataset_root).checkpoint(folder.name))
        group = state["group"]
        rows.append({"name": folder.name, "dataset": dataset_root.name, "state": state["state"],
                     "step": state["step"], "steps": state["steps"], "sweep": group.get("sweep"),
                     "lam": group.get("lam"), "seed": group.get("seed"),
                     "accuracy": state["metrics"].get("accuracy"),
                     "updated": pd.to_datetime(state["updated"], unit="s") if state["updated"] else None,
                     "folder": str(folder), "card": state["card"]})
    table = pd.DataFrame(rows, columns=[*RUN_COLUMNS, "folder", "card"])
    return table.sort_values("updated", ascending=False, na_position="last").reset_index(drop=True)


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every report of the given runs in long form: name, step, metric, value (and the run's sweep, λ, seed)."""
    rows = []
    for run in runs.itertuples():
        for report in read_metrics(run.folder):
            for metric in METRIC_LABELS:
                if metric in report:
                    rows.append({"name": run.name, "sweep": run.sweep, "lam": run.lam, "seed": run.seed,
                                 "step": report["step"], "metric": metric, "value": report[metric]})
    return pd.DataFrame(rows, columns=["name", "sweep", "lam", "seed", "step", "metric", "value"])


def _series_key(row) -> str:
    """Seeds of one sweep λ share a series (drawn as a band); any other run is its own series."""
    if isinstance(row.sweep, str) and pd.notna(row.lam) and pd.notna(row.seed):
        return f"{row.sweep} λ={row.lam:g}"
    return row.name


def curve_figure(long: pd.DataFrame, metric: str) -> go.Figure:
    """`metric` against training step: one line per run, or per sweep λ with its seeds' min–max as a band."""
    data = long[long.metric == metric].copy()
    fig = go.Figure()
    if data.empty:
        return house_style(fig, 420, f"no {METRIC_LABELS.get(metric, metric)} reported yet", legend=None)
    data["series"] = [_series_key(r) for r in data.itertuples()]
    for series, group in data.groupby("series", sort=True):
        stats = group.groupby("step")["value"].agg(["mean", "min", "max", "count"]).reset_index()
        seeds = group["name"].nunique()
        if seeds > 1:
            fig.add_trace(go.Scatter(x=[*stats.step, *stats.step[::-1]], y=[*stats["max"], *stats["min"][::-1]],
                                     fill="toself", opacity=0.25, line={"width": 0}, hoverinfo="skip",
                                     showlegend=False, legendgroup=series))
        fig.add_trace(go.Scatter(x=stats.step, y=stats["mean"], mode="lines+markers", legendgroup=series,
                                 name=f"{series} (mean of {seeds} seeds)" if seeds > 1 else series))
    fig.update_layout(xaxis_title="training step", yaxis_title=METRIC_LABELS.get(metric, metric))
    return house_style(fig, 420, legend="right")


def adopt_model(card: str | Path) -> Path:
    """Copy a finished trial's model (checked against its sha256) into the user model folder, where every page
    finds it; returns the new card's path."""
    model, info = load_model(card)
    info = card_fields(info)
    refuse_zoo_name(info["name"])
    return save_model(model, info, user_model_dir())
