"""Target grids: the paper's figures of every class pushed towards every class, per model, with an iteration scrubber."""
import json
import time

import pandas as pd
import streamlit as st
import torch

from app_pages.common import DEVICE, cards_of, models_named, pick_dataset, sample
from gradviz import figures
from gradviz.datasets import CLASS_NAMES
from gradviz.grids import (
    PAPER_ITERATION,
    TargetGrid,
    cross_predictions,
    first_of_each_class,
    mosaic,
    provenance,
    target_grid,
)
from gradviz.images import to_png16

ATTACKS = {"itgsm": "Iterated TGSM, unprojected (the paper)", "itgsm-projected": "Iterated TGSM in an ε-ball",
           "jsma": "JSMA (θ, γ)"}

st.title("Target grids")
st.caption("Each row is a test digit of one class, each column the class it is pushed towards. Against a "
           "gradient-regularized model the images turn into recognisable targets; against a normal one into noise; "
           "a distilled model's barely move (its gradients vanish).")
dataset = pick_dataset()
names = CLASS_NAMES[dataset]
cards = cards_of(dataset)
if not cards:
    st.warning(f"No models for {dataset}. Train one on the Train page or with `python -m gradviz train`.")
    st.stop()
by_defense = {c["defense"]: n for n, c in reversed(cards.items())}
st.session_state.setdefault(f"grid_models_{dataset}",
                            [by_defense[d] for d in ("normal", "distilled", "gradreg") if d in by_defense])

left, right = st.columns([2, 1])
with left:
    chosen = st.multiselect("Models (same images, side by side)", list(cards), key=f"grid_models_{dataset}",
                            max_selections=4, persist_state="session")
    attack = st.radio("Attack", list(ATTACKS), format_func=ATTACKS.get, horizontal=True, key="grid_attack",
                      persist_state="session")
with right:
    rows_from = st.radio("Rows", ["First of each class", "Chosen images"], key="grid_rows", horizontal=True,
                         persist_state="session")
    xs, ys = sample(dataset)
    indices = None
    if rows_from == "Chosen images":
        indices = st.multiselect(f"Images of the test sample (0–{len(ys) - 1})", range(len(ys)),
                                 default=[0, 1, 2], max_selections=10, key=f"grid_images_{dataset}",
                                 format_func=lambda i: f"#{i} ({names[int(ys[i])]})")
if not chosen or (indices is not None and not indices):
    st.info("Pick at least one model and one image.")
    st.stop()

settings: dict = {}
c1, c2, c3 = st.columns(3)
if attack.startswith("itgsm"):
    settings["step"] = c1.number_input("Step size", 0.01, 0.5, 0.1, 0.01, key="grid_step")
    settings["steps"] = c2.slider("Iterations computed", 1, 50, 25, key="grid_steps")
    if attack == "itgsm-projected":
        settings["eps"] = c3.slider("ε (L∞ ball)", 0.05, 0.7, 0.3, 0.05, key="grid_eps")
else:
    settings["theta"] = c1.select_slider("θ (change per pixel)", [-1.0, -0.5, 0.5, 1.0], 1.0, key="grid_theta")
    settings["gamma"] = c2.slider("γ (most pixels changed)", 0.02, 0.5, 0.25, 0.01, key="grid_gamma")


@st.cache_resource(max_entries=8, show_spinner="Attacking every row towards every class on every model…")
def computed_grid(dataset: str, hashes: tuple[tuple[str, str], ...], indices: tuple[int, ...] | None, attack: str,
                  settings: tuple[tuple[str, float], ...]) -> tuple[TargetGrid, float]:
    """One batched computation per model, every iteration kept: the scrubber below never recomputes."""
    x, y = (torch.from_numpy(a) for a in sample(dataset))
    x, y = first_of_each_class(x, y) if indices is None else (x[list(indices)], y[list(indices)])
    models = models_named([n for n, _ in hashes], dataset)
    start = time.perf_counter()
    grid = target_grid(models, x.to(DEVICE), y, attack="jsma" if attack == "jsma" else "itgsm", **dict(settings))
    return grid, time.perf_counter() - start


hashes = tuple((n, cards[n]["sha256"]) for n in chosen)
grid, seconds = computed_grid(dataset, hashes, tuple(indices) if indices is not None else None, attack,
                              tuple(sorted(settings.items())))

if grid.iterations > 1:
    s1, s2 = st.columns([4, 1])
    st.session_state.setdefault("grid_iteration", min(PAPER_ITERATION, grid.iterations))
    if s2.button(f"Paper's iteration ({PAPER_ITERATION})", key="grid_paper"):
        st.session_state["grid_iteration"] = PAPER_ITERATION
    st.session_state["grid_iteration"] = min(st.session_state["grid_iteration"], grid.iterations)
    iteration = s1.slider("Iteration", 0, grid.iterations, key="grid_iteration",
                          help=f"The paper's MNIST grids show iteration {PAPER_ITERATION}.")
else:
    iteration = 1
    st.caption("JSMA grids show the final images (each cell stops when its model predicts the target).")
show_all = st.toggle("Every model's prediction in the hover and a table", value=True, key="grid_all",
                     persist_state="session")

models = models_named(chosen, dataset)
views = cross_predictions(grid, models, iteration) if show_all else {}
row_names = [names[c] for c in grid.labels]


def cell_text(source: str) -> list[list[str]]:
    it = min(iteration, grid.iterations)
    out = []
    for r, true in enumerate(grid.labels):
        row = []
        for t in range(10):
            lines = [f"{names[true]} → {names[t]} (iteration {it})",
                     f"{source}: {names[int(grid.predicted[source][it, r, t])]}, "
                     f"p(target) {float(grid.target_prob[source][it, r, t]):.0%}"]
            lines += [f"{other}: {names[int(pred[r, t])]}, p(target) {float(prob[r, t]):.0%}"
                      for other, (pred, prob) in views.get(source, {}).items() if other != source]
            row.append("<br>".join(lines))
        out.append(row)
    return out


st.plotly_chart(figures.target_grid_figure({n: mosaic(grid.cells(n, iteration)) for n in chosen},
                                           {n: cell_text(n) for n in chosen}, row_names, names),
                width="stretch", key="grids")
st.caption(f"{len(grid.labels)} rows × 10 targets × {len(chosen)} models, "
           f"{'all ' + str(grid.iterations) + ' iterations ' if grid.iterations > 1 else ''}computed once on "
           f"**{DEVICE}** in {seconds:.1f} s; moving the iteration slider only redraws.")

if show_all:
    it = min(iteration, grid.iterations)
    off_diagonal = torch.tensor([[t != true for t in range(10)] for true in grid.labels])
    table = pd.DataFrame({evaluator: {source: float((pred == torch.arange(10))[off_diagonal].float().mean())
                                      for source, per in views.items() for e, (pred, _) in per.items()
                                      if e == evaluator}
                          for evaluator in chosen})
    st.markdown(f"**Share of off-diagonal cells classified as their target** at iteration {it} "
                "(rows: the model attacked; columns: the model looking)")
    st.dataframe(table.style.format("{:.0%}"), width="stretch")

export = st.selectbox("Export the grid of", chosen, key="grid_export")
record = provenance(grid, export, iteration, cards, dataset,
                    "first of each class" if indices is None else f"test sample images {list(indices)}")
stem = f"{export}-{attack}-grid-it{record['iteration']}"
e1, e2 = st.columns(2)
e1.download_button("Download grid PNG (16-bit, lossless)", to_png16(mosaic(grid.cells(export, iteration))),
                   f"{stem}.png", "image/png", on_click="ignore", key="grid_png")
e2.download_button("Download provenance JSON", json.dumps(record, indent=2), f"{stem}.json", "application/json",
                   on_click="ignore", key="grid_json")
