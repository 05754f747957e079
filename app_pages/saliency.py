"""Saliency page: several models' predictions and saliency maps of one image, on one scale or each its own."""
import streamlit as st
import torch

from app_pages.background import in_background, shelf
from app_pages.common import (
    cards_of,
    models_named,
    param_widget,
    pick_dataset,
    pick_image,
    pick_models,
    picked_sample_index,
    sample_masks,
    sample_tensors,
    sanity_check,
)
from gradviz.attribution.measures import gradient_norms, mask_share, zero_share
from gradviz.attribution.methods import CHANNEL_REDUCTIONS, DEFAULT_REDUCTION, explain, normalise
from gradviz.attribution.methods import REGISTRY as METHODS
from gradviz.data.datasets import class_names, has_masks
from gradviz.data.ground_truth import DECOYS, MASK_MEANING, swatch_class
from gradviz.evaluation import figures

NORMS_KEPT = 32  # gradient norms of a set of models on the test sample, per process
DECOY_DEMO = ("decoy-mnist-normal", "decoy-mnist-rrr", "decoy-mnist-gradreg")

st.title("Saliency")
st.caption("Input gradients are what the paper regularizes. On one shared scale equal colours mean equal "
           "gradient values, so models can be compared in magnitude as well as in shape; scaled each on its own "
           "(as captum shows them) the magnitude is normalized away.")
dataset = pick_dataset()
names = class_names(dataset)
left, right = st.columns([1, 2])
with left:
    x, label, caption = pick_image(dataset)
with right:
    if dataset == "decoy-mnist" and st.button(
            "Clever Hans: normal vs RRR vs Grad Reg (y)", icon=":material/compare:",
            help="The normal model may read the label off the swatch; RRR was told not to look there; Grad Reg (y) "
                 "was told nothing about it."):
        st.session_state[f"models_{dataset}"] = [n for n in DECOY_DEMO if n in cards_of(dataset)]
        missing = [n for n in DECOY_DEMO if n not in cards_of(dataset)]
        if missing:
            st.info(f"Not in this installation: {', '.join(missing)} (`python -m gradviz zoo build decoy-mnist`).")
    chosen = pick_models(dataset)
    method = st.selectbox("Method", list(METHODS), format_func=lambda m: METHODS[m].label, key="method",
                          persist_state="session")
    entry = METHODS[method]
    cls = label
    if entry.takes_class:
        cls = st.selectbox("Explain class", range(len(names)), index=label, format_func=lambda c: names[c],
                           key="explain")
    settings = entry.settings({p.name: param_widget(p, f"saliency_{method}_{p.name}", p.default)
                               for p in entry.params})
    reduction, per_channel = DEFAULT_REDUCTION, False
    if x.shape[1] > 1:
        reduction = st.selectbox("Colour channels → one map", list(CHANNEL_REDUCTIONS), key="channels",
                                 format_func=lambda r: f"{r}: {CHANNEL_REDUCTIONS[r]}", persist_state="session")
        per_channel = st.toggle("Per channel (R, G, B)", value=False, key="per_channel", persist_state="session",
                                help="One map per colour channel and model, on the same scale as the others.")
    cards = cards_of(dataset)
    checks = {n: sanity_check(dataset, n, cards[n]["sha256"], method) for n in chosen}
    failed = {n: r for n, r in checks.items() if r.fails}
    if failed:
        st.warning(f"⚠ {entry.label} fails the sanity check on " + ", ".join(
            f"{n} ({r.mean_similarity:.2f})" for n, r in failed.items()) + ": its maps stay alike when the "
            "model's weights are replaced by random ones, so they show the image more than what the model "
            "learned. See the Sanity checks page.", icon=":material/warning:")
    c1, c2, c3 = st.columns(3)
    signed = c1.toggle("Signed", value=True, key="signed", persist_state="session",
                       help="Signed: red raises the objective, blue lowers it. Off: absolute values.")
    shared = c2.toggle("One shared scale", value=True, key="shared", persist_state="session")
    overlay = c3.toggle("Overlay on image", value=False, key="overlay", persist_state="session")
    index = picked_sample_index()
    truth = sample_masks(dataset)[index] if has_masks(dataset) and index is not None else None
    if truth is not None:
        part, meaning = MASK_MEANING[dataset]
        if not st.toggle(f"Outline the {part}", value=True, key="outline", persist_state="session",
                         help=f"The ground truth: {meaning}."):
            truth = None

models = models_named(chosen, dataset)
views = explain(models, x, label, method, cls, channels=reduction, **settings)
if per_channel:
    panels = {f"{n} · {c}": m for n, model in models.items() for c, m in zip("RGB", entry.attribute_channels(
        model, x, torch.tensor([label], device=x.device), torch.tensor([cls], device=x.device), **settings)[0]
        .cpu().numpy())}
else:
    panels = {n: v["map"] for n, v in views.items()}
maps, scales = normalise(list(panels.values()), shared=shared, signed=signed)
st.plotly_chart(figures.saliency_grid(figures.display(x), maps, list(panels), signed, scales, overlay, truth),
                width="stretch", key="grid")
st.caption(f"{caption}; {entry.label}; "
           + ("one shared scale: equal colours mean equal gradient values across models."
              if shared else "each map scaled by its own maximum."))
preds = {n: names[int(v["probs"].argmax())] for n, v in views.items()}
st.plotly_chart(figures.probability_bars({n: v["probs"] for n, v in views.items()}, names), width="stretch",
                key="probs")
st.write(" · ".join(f"**{n}** → {p} ({views[n]['probs'].max():.0%})" for n, p in preds.items()))
if truth is not None:
    part, _ = MASK_MEANING[dataset]
    coded = swatch_class(x[0, 0].cpu().numpy(), truth) if dataset in DECOYS else None
    if coded is not None:
        st.caption(f"The swatch's grey codes class **{names[coded]}**; the image is **{names[label]}**. A model that "
                   "predicts the swatch's class on a test image where they differ is reading the shortcut.")
    rows = [{"model": n, "predicts": preds[n], f"share of |map| on the {part}": mask_share(v["map"], truth)}
            | ({"follows the swatch": preds[n] == names[coded]} if coded is not None else {})
            for n, v in views.items()]
    st.dataframe(rows, hide_index=True)

st.subheader("Gradient norms on the test sample")


x_sample, y_sample = sample_tensors(dataset)
norms = in_background(shelf("norms", NORMS_KEPT), (dataset, tuple((n, cards[n]["sha256"]) for n in models)),
                      lambda job, nets=models, xs=x_sample, ys=y_sample: gradient_norms(nets, xs, ys),
                      "Gradient norms", f"{len(models)} model(s) × {len(y_sample)} images × 3 gradients")
if norms is None:
    st.stop()
st.plotly_chart(figures.norm_boxplot(norms), width="stretch", key="norms")
zeros = zero_share(norms)
zeros = zeros[zeros["zero"] > 0]
st.caption("‖∇ₓ‖₂ per image of the committed test sample (100 images), log scale. log p(true) and log p(target), "
           f"target (y+1) mod {len(names)}, are the paper's box plots: a regularized model's two are alike and small, "
           "a normal model's target norms are far larger than its true-label ones. Σ log p is what the saliency maps show."
           + ("" if zeros.empty else " Exactly zero, so not drawn: " + ", ".join(
               f"{r.model} {r.kind} {r.zero:.0%}" for r in zeros.itertuples()) + " (saturated softmax)."))
