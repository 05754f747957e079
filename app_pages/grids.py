"""Target grids: the paper's figures of every class pushed towards every class, per model, with an iteration scrubber."""
import json
import time

import pandas as pd
import streamlit as st
import torch

from app_pages.background import in_background, remember, shelf, stop_if_cancelled
from app_pages.common import (
    DEVICE,
    LiveProgress,
    attack_controls,
    cards_or_stop,
    models_named,
    pick_dataset,
    sample,
)
from gradviz.attacks.grids import (
    PAPER_GRID_ATTACK,
    PAPER_ITERATION,
    TargetGrid,
    cross_predictions,
    first_of_each_class,
    grid_settings,
    mosaic,
    provenance,
    target_grid,
)
from gradviz.attacks.registry import REGISTRY, attack_title, get_attack
from gradviz.data.datasets import class_names
from gradviz.data.images import to_png
from gradviz.evaluation import figures
from gradviz.nets.catalog import default_models
from gradviz.progress import PartsEstimate

KEPT = {"grid": 8, "views": 256}  # per process: grids (tens of MB each) and cross-model views of one iteration


st.title("Target grids")
st.caption("Each row is a test digit of one class, each column the class it is pushed towards. Against a "
           "gradient-regularized model the images turn into recognisable targets; against a normal one into noise; "
           "a distilled model's barely move (its gradients vanish).")
dataset = pick_dataset()
names = class_names(dataset)
cards = cards_or_stop(dataset)
st.session_state.setdefault(f"grid_models_{dataset}", default_models(cards, ("normal", "distilled", "gradreg")))

left, right = st.columns([2, 1])
with left:
    chosen = st.multiselect("Models (same images, side by side)", list(cards), key=f"grid_models_{dataset}",
                            max_selections=4, persist_state="session")
    attack = st.radio("Attack", list(REGISTRY), index=list(REGISTRY).index(PAPER_GRID_ATTACK),
                      format_func=lambda a: REGISTRY[a].label, horizontal=True, key="grid_attack", persist_state="session",
                      help="Targeted attacks push each row towards every class (10 columns); untargeted ones make "
                           "one column.")
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

entry = get_attack(attack)
preset_eps, preset = grid_settings(entry)
with st.container(horizontal=True):
    eps, params = attack_controls(entry, "grid", eps_default=preset_eps or 0.3, eps_max=1.0, defaults=preset,
                                  eps_per_attack=True)
if entry.eps_bounded and eps == 1.0:
    st.caption("ε = 1 keeps no ε-ball (every image is within it): the paper's unprojected grids.")


def grid_rows(indices: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = (torch.from_numpy(a) for a in sample(dataset))
    if indices is None:
        return first_of_each_class(x, y, classes=len(class_names(dataset)))
    return x[list(indices)], y[list(indices)]


def compute_grid(names: list[str], indices: tuple[int, ...] | None) -> tuple[TargetGrid, float]:
    """One batched computation per model, every iteration kept, with a progress bar while it runs."""
    x, y = grid_rows(indices)
    bar = LiveProgress(f"{entry.label}: every row on every model", upper_bound=not entry.eps_bounded)
    start = time.perf_counter()
    grid = target_grid(models_named(names, dataset), x.to(DEVICE), y, attack, eps, params, progress=bar)
    bar.close()
    return grid, time.perf_counter() - start


def grid_in_background(names: list[str], indices: tuple[int, ...] | None, key: tuple) -> tuple[TargetGrid, float] | None:
    """A multi-step attack's grid (iterated TGSM: seconds a model; JSMA: minutes) made in the background: the page
    settles at once, shows the job's progress, and draws the grid when it is done. None until then."""
    x, y = grid_rows(indices)
    models = models_named(names, dataset)  # loaded here: the job's thread has no Streamlit context
    settings = (attack, eps, dict(params))

    def make(job, x=x, y=y, models=models) -> tuple[TargetGrid, float]:
        estimate, start = PartsEstimate(len(models), "model"), time.perf_counter()

        def progress(done: int, total: int, what: str = "") -> None:
            stop_if_cancelled(job)
            job.report(done, total, f"{what}: {estimate.describe(done, total, what)}")

        grid = target_grid(models, x.to(DEVICE), y, *settings, progress=progress)
        return grid, time.perf_counter() - start

    hint = (f"{entry.label} takes minutes on a CPU" if entry.iterates is None
            else f"{len(models)} model(s) × {len(x)} rows, every iteration kept")
    return in_background(shelf("grid", KEPT["grid"]), key, make, f"{entry.label} grid", hint)


hashes = tuple((n, cards[n]["sha256"]) for n in chosen)
rows_key = tuple(indices) if indices is not None else None
grid_key = (dataset, hashes, rows_key, attack, eps, tuple(sorted(params.items())))
if entry.multi_step:
    made = grid_in_background(chosen, rows_key, grid_key)
    if made is None:
        st.stop()
    grid, seconds = made
else:
    grid, seconds = remember(shelf("grid", KEPT["grid"]), grid_key, lambda: compute_grid(chosen, rows_key))

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
    st.caption(f"{attack_title(attack)} grids show each cell's final image"
               + (": each cell stops when its model predicts the target, so there are no iterations to scrub."
                  if entry.multi_step else ": one step, so there are no iterations to scrub."))
show_all = st.toggle("Every model's prediction in the hover and a table", value=True, key="grid_all",
                     persist_state="session")

models = models_named(chosen, dataset)
views = remember(shelf("views", KEPT["views"]), (*grid_key, min(iteration, grid.iterations)),
                 lambda: cross_predictions(grid, models, iteration)) if show_all else {}
row_names = [names[c] for c in grid.labels]


column_names = [names[t] for t in grid.targets] if grid.targeted else ["untargeted"]


def cell_text(source: str) -> list[list[str]]:
    it = min(iteration, grid.iterations)
    goals = grid.goals()
    out = []
    for r, true in enumerate(grid.labels):
        row = []
        for c, column in enumerate(column_names):
            goal = int(goals[r, min(c, goals.shape[1] - 1)])
            lines = [f"{names[true]} → {column} (iteration {it})",
                     f"{source}: {names[int(grid.predicted[source][it, r, c])]}, "
                     f"p({names[goal]}) {float(grid.target_prob[source][it, r, c]):.0%}"]
            lines += [f"{other}: {names[int(pred[r, c])]}, p({names[goal]}) {float(prob[r, c]):.0%}"
                      for other, (pred, prob) in views.get(source, {}).items() if other != source]
            row.append("<br>".join(lines))
        out.append(row)
    return out


st.plotly_chart(figures.target_grid_figure({n: mosaic(grid.cells(n, iteration)) for n in chosen},
                                           {n: cell_text(n) for n in chosen}, row_names, column_names),
                width="stretch", key="grids")
st.caption(f"{len(grid.labels)} rows × {len(column_names)} {'targets' if grid.targeted else 'column'} × "
           f"{len(chosen)} models, "
           f"{'all ' + str(grid.iterations) + ' iterations ' if grid.iterations > 1 else ''}computed once on "
           f"**{DEVICE}** in {seconds:.1f} s" + ("; moving the iteration slider only redraws." if grid.iterations > 1
                                                 else "."))

if show_all:
    it = min(iteration, grid.iterations)
    table = pd.DataFrame({evaluator: {source: grid.success_share(per[evaluator][0]) for source, per in views.items()}
                          for evaluator in chosen})
    what = ("Share of off-diagonal cells classified as their target" if grid.targeted
            else "Share of images misclassified")
    st.markdown(f"**{what}** at iteration {it} (rows: the model attacked; columns: the model looking)")
    st.dataframe(table.style.format("{:.0%}"), width="stretch")

export = st.selectbox("Export the grid of", chosen, key="grid_export")
record = provenance(grid, export, iteration, cards, dataset,
                    "first of each class" if indices is None else f"test sample images {list(indices)}")
stem = f"{export}-{attack}-grid-it{record['iteration']}"
e1, e2 = st.columns(2)
e1.download_button("Download grid PNG (grey: 16-bit, lossless; colour: 8-bit RGB)",
                   to_png(mosaic(grid.cells(export, iteration))),
                   f"{stem}.png", "image/png", on_click="ignore", key="grid_png")
e2.download_button("Download provenance JSON", json.dumps(record, indent=2), f"{stem}.json", "application/json",
                   on_click="ignore", key="grid_json")
