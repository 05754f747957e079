"""Sanity checks page: Adebayo et al.'s cascading randomisation, live, with the methods that fail it flagged."""
import numpy as np
import streamlit as st

from app_pages.background import in_background, shelf, stop_if_cancelled
from app_pages.common import (
    SANITY_KEPT,
    cards_or_stop,
    models_named,
    pick_dataset,
    sample,
    sample_tensors,
    sanity_check,
    sanity_key,
)
from gradviz.attribution.methods import DEFAULT_METHODS
from gradviz.attribution.methods import REGISTRY as METHODS
from gradviz.attribution.sanity import FAIL_SIMILARITY, cascading_check
from gradviz.data.datasets import class_names
from gradviz.evaluation.figures.interpretation import sanity_curves, sanity_maps

st.title("Sanity checks")
st.caption("A saliency map should depend on what the model learned. Here the model's layers are replaced by "
           "random weights one by one, from the logits down, and each method explains the same images again "
           "(Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018). A method whose maps stay alike "
           "shows the image, not the model, and is flagged.")
dataset = pick_dataset()
cards = cards_or_stop(dataset)
c1, c2, c3 = st.columns([1, 2, 1])
names = list(cards)
model = c1.selectbox("Model", names, index=names.index(f"{dataset}-normal") if f"{dataset}-normal" in names else 0,
                     key=f"sanity_model_{dataset}", persist_state="session")
methods = c2.multiselect("Methods", list(METHODS), default=[*DEFAULT_METHODS, "input-x-gradient"],
                         format_func=lambda m: METHODS[m].label, key="sanity_methods", persist_state="session")
n = c3.slider("Test images", 4, 100, 16, 4, key="sanity_n", persist_state="session",
              help="the first N images of the committed test sample; the curve is their mean")
if not methods:
    st.info("Pick at least one method.")
    st.stop()

store = shelf("sanity", SANITY_KEPT)
keys = {m: sanity_key(dataset, cards[model]["sha256"], m, n) for m in methods}
missing = [m for m in methods if store.get(keys[m]) is None]
if missing:  # IntegratedGradients and SmoothGrad on every randomised copy: seconds, so in the background
    net, (xs, ys) = models_named([model], dataset)[model], sample_tensors(dataset, n)

    def make(job, net=net, xs=xs, ys=ys, todo=tuple((m, keys[m]) for m in missing)) -> bool:
        for done, (method, key) in enumerate(todo):
            stop_if_cancelled(job)
            job.report(done, len(todo), f"{METHODS[method].label} ({done + 1} of {len(todo)} methods)")
            store.put(key, cascading_check(net, xs, ys, method))
        return True

    if in_background(store, ("run", dataset, cards[model]["sha256"], tuple(missing), n), make, "The sanity check",
                     f"{len(missing)} method(s) × {n} images × every randomised layer") is None:
        st.stop()
results = {m: sanity_check(dataset, model, cards[model]["sha256"], m, n) for m in methods}
layers = next(iter(results.values())).layers
st.plotly_chart(sanity_curves(layers, {m: r.similarity for m, r in results.items()}, FAIL_SIMILARITY),
                width="stretch", key="sanity_curves")
st.dataframe(
    [{"method": m, "mean similarity over the cascade": round(r.mean_similarity, 3),
      "after every layer is random": round(float(np.nanmean(r.similarity[-1])), 3),
      "verdict": "⚠ fails: follows the image" if r.fails else "passes: follows the weights"}
     for m, r in results.items()], hide_index=True, width="stretch")
st.caption(f"Rank correlation of |map| with the trained model's, mean over {n} images; a method is flagged when "
           f"its mean over the cascade is {FAIL_SIMILARITY} or more (the flag the Saliency page shows).")

_, ys = sample(dataset)
index = st.slider("Image", 0, n - 1, 0, key="sanity_image", persist_state="session")
st.subheader(f"Test sample #{index} ({class_names(dataset)[int(ys[index])]}), |map| each on its own scale")
st.plotly_chart(sanity_maps({m: r.maps[:, index] for m, r in results.items()}, layers), width="stretch",
                key="sanity_maps")
