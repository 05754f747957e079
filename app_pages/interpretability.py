"""Interpretability page: explanation quality, measured — model × method × metric with 95% intervals, a radar over
categories, the best- and worst-scored images of any cell, and new runs in the background."""
from dataclasses import asdict

import numpy as np
import streamlit as st
import torch

from app_pages.common import DEVICE, cards_of, job_status, models_named, pick_dataset, submit_once
from gradviz.attribution.methods import DEFAULT_METHODS, get_method
from gradviz.attribution.methods import REGISTRY as METHODS
from gradviz.attribution.metrics import REGISTRY as METRICS
from gradviz.data.datasets import DatasetNotFound, class_names, load_dataset
from gradviz.evaluation.figures.interpretation import category_radar, score_heatmap
from gradviz.evaluation.report.interpretation_claims import answer, method_counts
from gradviz.evaluation.runs.interpretation import (
    InterpretConfig,
    extremes,
    interpret,
    interpretation_folders,
    read_interpretation,
    write_interpretation,
)
from gradviz.evaluation.runs.matrix import default_models
from gradviz.paths import new_results_folder, user_results_dir

st.title("Interpretability")
st.caption("Is a model's map faithful, robust, concentrated, dependent on what the model learned, on the object? "
           "Each metric is scored per image on the same test images and summarised by its mean with a 95% "
           "bootstrap interval; maps are divided by their own largest value first, so a model is not rewarded "
           "for small gradients alone.")
dataset = pick_dataset()

with st.expander("Run a new analysis", expanded=False):
    with st.form("interpret", enter_to_submit=False):
        models = st.multiselect("Models", list(cards_of(dataset)), default=default_models(dataset), key="i_models",
                                help="the zoo, the paper-scale pair and your own models of this dataset")
        methods = st.multiselect("Saliency methods", list(METHODS), default=list(DEFAULT_METHODS),
                                 format_func=lambda m: METHODS[m].label, key="i_methods")
        metrics = st.multiselect("Metrics", list(METRICS), default=list(METRICS),
                                 format_func=lambda m: f"{METRICS[m].label} ({METRICS[m].category})", key="i_metrics")
        n = st.number_input("Test images", 10, 10000, 100, step=10, key="i_n",
                            help="1,000 images, the zoo and every metric take about half an hour on 2 CPU cores")
        submitted = st.form_submit_button("Start in the background", key="i_start")
    if submitted:
        if not (models and methods and metrics):
            st.error("Cannot start: choose at least one model, method and metric.")
        else:
            config = InterpretConfig(dataset=dataset, models=models, methods=methods, metrics=metrics, n=int(n),
                                     device=DEVICE)
            out = new_results_folder(f"{dataset}-interpret")

            def work(job, config=config, out=out):
                result = interpret(config, cache_dir=user_results_dir() / "cache", progress=False,
                                   on_progress=lambda d, t, m: job.report(d, t, m))
                return write_interpretation(result, out)

            submit_once("interpret_job", asdict(config), f"interpret {dataset}", work)


job_status("interpret_job", "Scoring", "cells", "Analysis")

folders = {k: v for k, v in interpretation_folders().items() if k.split(" ")[0].startswith(f"{dataset}-")}
if not folders:
    st.info(f"No interpretability results for {dataset} yet: run one above or with `python -m gradviz interpret`.")
    st.stop()
choice = st.selectbox("Results", list(folders), key=f"interp_results_{dataset}", persist_state="session")
result = read_interpretation(folders[choice])
summary, prov = result.summary, result.provenance
st.caption(f"{prov['config']['n']} test images · {summary.model.nunique()} models · {summary.method.nunique()} "
           f"methods · {summary.metric.nunique()} metrics · {prov['device']} · {prov['seconds']:.0f} s · "
           f"finished {prov['finished']}")

models = list(dict.fromkeys(summary.model))
if len(models) >= 2:
    regularized = next((m for m in models if m.endswith("-gradreg")), models[-1])
    normal = next((m for m in models if m.endswith("-normal") and m != regularized), models[0])
    a, b = st.columns(2)
    model = a.selectbox("Are the maps of", models, index=models.index(regularized), key=f"interp_model_{choice}")
    others = [m for m in models if m != model]
    baseline = b.selectbox("better than those of", others, index=others.index(normal) if normal in others else 0,
                           key=f"interp_baseline_{choice}")
    counts = method_counts(result, model, baseline)
    st.markdown(f"**Answer.** {answer(counts, model, baseline)}")
    with st.expander("Per method"):
        st.dataframe(counts, hide_index=True)

categories = list(dict.fromkeys(summary["category"]))
shown = st.multiselect("Categories", categories, default=categories, key="interp_categories")
view = summary[summary["category"].isin(shown)]
if view.empty:
    st.info("Pick at least one category.")
    st.stop()
st.plotly_chart(score_heatmap(view), width="stretch", key="interp_heatmap")
st.caption("Colour ranks each column from worst (dark) to best (yellow) whichever way the metric points (↑: higher "
           "is better); text: the mean (hover a cell for its 95% interval).")

radar_method = st.radio("Radar for method", list(dict.fromkeys(summary["method"])), horizontal=True,
                        key="interp_radar")
st.plotly_chart(category_radar(view, radar_method), width="stretch", key="interp_radar_fig")

st.subheader("Drill down: the best and worst images of one cell")
d1, d2, d3 = st.columns(3)
cell_model = d1.selectbox("Model", list(dict.fromkeys(summary["model"])), key="drill_model")
cell_method = d2.selectbox("Method", list(dict.fromkeys(summary["method"])), key="drill_method")
cell_metric = d3.selectbox("Metric", list(dict.fromkeys(view["metric"])), key="drill_metric",
                           format_func=lambda m: METRICS[m].label if m in METRICS else m)
best, worst = extremes(result.scores, cell_model, cell_method, cell_metric)
if best.empty:
    st.info("This folder keeps no per-image scores for that cell.")
    st.stop()
settings = prov.get("methods", {}).get(cell_method, {}).get("settings", {})


def drill_down(x_all: torch.Tensor, y_all: torch.Tensor) -> None:
    """The best and worst images of the chosen cell, each with its map."""
    net = models_named([cell_model], dataset).get(cell_model)
    names = class_names(dataset)
    for title, rows in (("Best", best), ("Worst", worst)):
        st.markdown(f"**{title}** scores")
        cols = st.columns(len(rows))
        index = torch.tensor(rows["image"].tolist(), dtype=torch.long)
        images, labels = x_all[index].to(DEVICE), y_all[index].to(DEVICE)
        maps = get_method(cell_method).attribute(net, images, labels, None, **settings).abs().cpu().numpy() \
            if net is not None else None
        for col, k, score, i in zip(cols, rows["image"], rows["score"], range(len(rows))):
            col.image(images[i, 0].cpu().numpy(), caption=f"#{k} {names[int(labels[i])]} · {score:.3f}", clamp=True,
                      width=84)
            if maps is not None:
                m = maps[i] / maps[i].max() if maps[i].max() > 0 else maps[i]
                col.image(np.clip(m, 0, 1), caption="|map|", clamp=True, width=84)


try:  # an expected condition on a machine with the committed samples only: say so, keep the rest of the page
    drill_down(*load_dataset(dataset, "test", prov["config"].get("data_dir")))
except DatasetNotFound as missing:
    st.warning(f"The drill-down shows images from the full {dataset} test set, which this machine does not have: "
               f"{missing}")
with st.expander("Summary table"):
    st.dataframe(summary, hide_index=True, width="stretch")
    st.download_button("Download summary.csv", summary.to_csv(index=False), "summary.csv", "text/csv",
                       on_click="ignore")
