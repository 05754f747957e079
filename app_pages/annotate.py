"""Annotate page: paint where a model must not look, fine-tune it from the marks, see before and after.

The loop of "right for the right reasons" run by a person: the page opens on the training images whose saliency
sits most off the object, a person paints "not here" (and optionally "here") over the model's input gradient, the
marks are kept per dataset and model (exportable), and a background run fine-tunes the model with RRR, RRR-G or
counterexamples on the marked images. Library: gradviz.data.annotations, gradviz.attribution.candidates,
gradviz.training.fine_tune, gradviz.evaluation.runs.shortcut_check.
"""
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app_pages.common import DEVICE, cards_or_stop, job_status, models_named, pick_dataset, submit_job
from gradviz.attribution.candidates import ORDERS, annotation_order
from gradviz.attribution.measures import input_gradient
from gradviz.data.annotations import (
    STROKE_COLOURS,
    AnnotationError,
    Annotations,
    annotation_path,
    load_annotations,
    mask_from_canvas,
    save_annotations,
)
from gradviz.data.datasets import class_names, evidence_regions, has_masks, image_shape, load_dataset
from gradviz.evaluation import figures
from gradviz.evaluation.figures.annotation_curve import METRIC_TITLES, curve_figure
from gradviz.evaluation.report.annotation_curve import CURVE_FILE, curve_answer, read_curve, summary_text
from gradviz.evaluation.runs.shortcut_check import change_sentence, shortcut_table
from gradviz.nets.cards import free_user_name
from gradviz.paths import result_folders_holding
from gradviz.training.defenses import DEFENSE_SPECS, MASKED
from gradviz.training.fine_tune import fine_tune_config
from gradviz.training.loop import train_and_save

POOL = 300  # training images the page ranks for annotation
COMPARED = 500  # test images of the before/after table
CANVAS = 280  # about this many pixels on the canvas's longer side: a 28×28 digit at 10 canvas pixels a pixel
TOOLS = {"Brush": "freedraw", "Box": "rect", "Lasso": "polygon"}
KIND = {"freedraw": "brush", "rect": "box", "polygon": "lasso"}


@st.cache_data(max_entries=8, show_spinner="Ranking training images for annotation…")
def ranked(dataset: str, model: str, sha256: str, order: str) -> np.ndarray:
    """Indices of the first POOL training images in annotation order, for one model file (keyed by its hash)."""
    x, y = (torch.from_numpy(a) for a in train_images(dataset))
    regions = evidence_regions(dataset, "train")
    net = models_named([model], dataset)[model]
    return annotation_order(net, x.to(DEVICE), y.to(DEVICE), order,
                            None if regions is None else regions[:POOL].to(DEVICE)).cpu().numpy()


@st.cache_data(max_entries=4)
def train_images(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_dataset(dataset, "train")
    return x[:POOL].numpy(), y[:POOL].numpy()


def stored(dataset: str, model: str) -> Annotations:
    """This dataset's and model's annotations as saved, or a new set."""
    path = annotation_path(dataset, model)
    height, width = image_shape(dataset)
    if path.is_file():
        return load_annotations(path, dataset, (height, width))
    return Annotations(dataset, height, width, model=model)


def canvas(background: np.ndarray, tool: str, colour: tuple[int, int, int], scale: int, key: str):
    try:
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        st.info("Annotating needs the package streamlit-drawable-canvas: pip install 'gradviz[app]'.")
        st.stop()
    from PIL import Image

    r, g, b = colour
    return st_canvas(fill_color=f"rgba({r}, {g}, {b}, 0.5)", stroke_width=scale * 2, stroke_color=f"rgb({r}, {g}, {b})",
                     background_image=Image.fromarray(background), height=background.shape[0],
                     width=background.shape[1], drawing_mode=tool, key=key, update_streamlit=True,
                     return_image_data=True)


st.title("Teach it where not to look")
st.caption("Paint where the model must not look over its input gradient (yellow), save, and fine-tune: RRR "
           "penalises the input gradient there, RRR-G the Grad-CAM map, counterexamples show the model copies "
           "with the marked region randomised. Marked images get the penalty; the rest plain cross-entropy.")
dataset = pick_dataset()
cards = cards_or_stop(dataset)
model_name = st.selectbox("Model to fix", list(cards), key=f"annotate_model_{dataset}", persist_state="session")
card = cards[model_name]
net = models_named([model_name], dataset)[model_name]
annotations = stored(dataset, model_name)
names = class_names(dataset)
height, width = image_shape(dataset)

order = st.radio("Show first", list(ORDERS), format_func=ORDERS.get, horizontal=True, key="annotate_order")
ranking = ranked(dataset, model_name, card["sha256"], order)
xs, ys = train_images(dataset)
position = st.session_state.setdefault("annotate_position", 0) % len(ranking)
image_id = int(ranking[position])
done = set(annotations.image_ids.tolist())

left, right = st.columns([3, 2])
with right:
    st.metric("Images annotated", len(annotations), help=f"saved in {annotation_path(dataset, model_name)}")
    if "annotate_flash" in st.session_state:
        st.success(st.session_state.pop("annotate_flash"))
    mark = st.radio("Mark", ["not here", "here"], horizontal=True, key="annotate_mark",
                    help="Red: the model must not look there. Green (optional): where the evidence is.")
    tool = TOOLS[st.radio("Tool", list(TOOLS), horizontal=True, key="annotate_tool")]
    back, forward = st.columns(2)
    if back.button("Previous image", icon=":material/arrow_back:", width="stretch"):
        st.session_state["annotate_position"] = position - 1
        st.rerun()
    if forward.button("Next image", icon=":material/arrow_forward:", width="stretch"):
        st.session_state["annotate_position"] = position + 1
        st.rerun()
with left:
    x = torch.from_numpy(xs[image_id:image_id + 1]).to(DEVICE)
    y = torch.tensor([int(ys[image_id])], device=DEVICE)
    saliency = input_gradient(net, x, y, "logp")[0].abs().amax(0).cpu().numpy()
    scale = max(1, CANVAS // max(height, width))  # whole canvas pixels per image pixel, so marks map back exactly
    result = canvas(figures.saliency_overlay(figures.display(x), saliency, scale), tool,
                    STROKE_COLOURS["not_here" if mark == "not here" else "here"], scale, f"annotate_{dataset}_{image_id}")
    st.markdown(f"Training image **#{image_id}** ({names[int(ys[image_id])]}), {position + 1} of {len(ranking)} · "
                + ("already annotated: saving replaces it" if image_id in done else "not annotated yet"))
with right:
    drawn = result.image_data if result is not None else None
    if st.button("Save this image's annotation", type="primary", icon=":material/save:", width="stretch",
                 disabled=drawn is None):
        try:
            annotations.add(image_id, mask_from_canvas(drawn, (height, width), "not_here"),
                            mask_from_canvas(drawn, (height, width), "here"), KIND[tool])
        except AnnotationError as exc:
            st.error(str(exc))
        else:
            save_annotations(annotations, annotation_path(dataset, model_name))
            st.session_state["annotate_position"] = position + 1
            st.rerun()
    if st.button("Undo last annotation", icon=":material/undo:", width="stretch", disabled=not len(annotations)):
        annotations.remove(int(annotations.image_ids[-1]))
        save_annotations(annotations, annotation_path(dataset, model_name))
        st.rerun()
    if len(annotations):
        st.download_button("Export annotations (.npz)", annotation_path(dataset, model_name).read_bytes(),
                           file_name=f"{dataset}-{model_name}-annotations.npz", icon=":material/download:",
                           width="stretch")
    upload = st.file_uploader("Import annotations (.npz)", type=["npz"], key="annotate_import", max_upload_size=50)
    if upload is not None and st.button("Add the imported annotations", width="stretch"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "import.npz"
            path.write_bytes(upload.getvalue())
            try:
                imported = load_annotations(path, dataset, (height, width),
                                            n_train=len(load_dataset(dataset, "train")[1]))
            except AnnotationError as exc:
                st.error(str(exc).replace(str(path), upload.name))
                st.stop()
        for i, nh, h, kind in zip(imported.image_ids, imported.not_here, imported.here, imported.kinds):
            annotations.add(int(i), nh, h, str(kind))
        save_annotations(annotations, annotation_path(dataset, model_name))
        st.session_state["annotate_flash"] = f"{len(imported)} annotations added."
        st.rerun()

st.divider()
st.subheader("Fine-tune from the annotations")
defense = st.selectbox("Penalty", sorted(MASKED), format_func=lambda d: DEFENSE_SPECS[d].label, key="annotate_defense",
                       help="Each cites its paper on the Models page's defense list.")
with st.form("fine_tune", enter_to_submit=False):
    c1, c2 = st.columns(2)
    steps = c1.number_input("Steps", 10, 20000, 500, 10, key="annotate_steps",
                            help="The annotation curve (below) fine-tunes 500 steps of 64 images.")
    lam = c2.number_input("λ", 0.0, 1e6, DEFENSE_SPECS[defense].suggested_lam or 0.0, format="%.4g",
                          key=f"annotate_lam_{defense}",
                          disabled=not DEFENSE_SPECS[defense].takes_lam)
    name = free_user_name(f"{model_name}-{defense}-annotated")
    started = st.form_submit_button(f"Fine-tune into {name}", type="primary", disabled=not len(annotations))
if started:
    config = fine_tune_config(card, str(annotation_path(dataset, model_name)), defense, int(steps), float(lam), name,
                              DEVICE)

    def work(job, config=config):
        def on_step(step, total, stats):
            job.report(step, total, f"step {step}/{total}", **stats)

        return train_and_save(config, on_step=on_step, should_stop=lambda: job.cancelled, progress=False)[1]["name"]

    st.session_state["annotate_job"] = submit_job(f"fine-tune {name}", work).id
job_status("annotate_job", "Fine-tuning", "steps", "Fine-tuning")

curves = {label: folder for label, folder in result_folders_holding(CURVE_FILE).items()
          if read_curve(folder)["dataset"] == dataset}
if curves:
    with st.expander("How many annotations does it take?"):
        label = st.selectbox("Curve", list(curves), key="annotate_curve") if len(curves) > 1 else next(iter(curves))
        record = read_curve(curves[label])
        st.markdown(curve_answer(record))
        metric = st.radio("Show", list(METRIC_TITLES), format_func=METRIC_TITLES.get, horizontal=True,
                          key="annotate_curve_metric")
        st.plotly_chart(curve_figure(record, metric), width="stretch", key="annotate_curve_figure")
        st.markdown(summary_text(record))

st.divider()
st.subheader("Before and after")
after_options = [n for n, c in cards.items() if (c.get("init_from") or {}).get("name") == model_name
                 and c.get("annotations")]
if not after_options:
    st.info("A model fine-tuned from these annotations appears here once it is trained.")
    st.stop()
after = st.selectbox("Fine-tuned model", after_options, key="annotate_after")
pair = models_named([model_name, after], dataset)
if has_masks(dataset):
    table = shortcut_table(pair, dataset, n=COMPARED, device=DEVICE)
    st.markdown(change_sentence(table, model_name, after, COMPARED))
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                        for c in table.columns if c != "model"})
test_x, test_y = load_dataset(dataset, "test")
held_out = test_x[:4].to(DEVICE), test_y[:4].to(DEVICE)
maps = {n: input_gradient(m, *held_out, "logp").abs().amax(1).cpu().numpy() for n, m in pair.items()}
top = max(float(v.max()) for v in maps.values()) or 1.0
for i in range(len(held_out[0])):
    st.plotly_chart(figures.saliency_grid(figures.display(held_out[0][i:i + 1]), [maps[n][i] / top for n in pair],
                                          list(pair), signed=False, scales=[top] * len(pair)),
                    key=f"before_after_{i}", width="stretch")
st.caption("Held-out test images; both maps on one shared scale, so a map that left the marked region shows it.")
