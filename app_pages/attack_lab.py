"""Attack lab: attack one image live with a chosen source model and see how every selected model reacts."""
import json
import time

import pandas as pd
import streamlit as st
import torch

from app_pages.common import DEVICE, cards_of, models_named, pick_dataset, pick_image, pick_models
from gradviz import figures
from gradviz.attacks import attack_image
from gradviz.datasets import CLASS_NAMES
from gradviz.grids import itgsm_path
from gradviz.images import to_png16
from gradviz.saliency import explain, normalise

ATTACK_NAMES = {"fgsm": "FGSM (untargeted)", "tgsm": "TGSM (targeted, one step)",
                "itgsm": "Iterated TGSM (targeted, projected)", "pgd": "PGD (untargeted, 20 steps)",
                "jsma": "JSMA (targeted, L0)"}

st.title("Attack lab")
dataset = pick_dataset()
names = CLASS_NAMES[dataset]
cards = cards_of(dataset)
left, right = st.columns([1, 2])
with left:
    x, label, caption = pick_image(dataset)
with right:
    chosen = pick_models(dataset, label="Models that see the adversarial image")
    normal = next((i for i, c in enumerate(cards.values()) if c["defense"] == "normal"), 0)
    source = st.selectbox("Source model (the attack uses its gradient)", list(cards), index=normal,
                          key=f"source_{dataset}", persist_state="session")
    attack = st.radio("Attack", list(ATTACK_NAMES), format_func=ATTACK_NAMES.get, horizontal=True,
                      key="attack", persist_state="session")
    target, steps, gamma, eps = None, 10, 0.25, 0.0
    if attack == "jsma":
        gamma = st.slider("γ (most pixels changed, each raised by θ = 1)", 0.02, 0.5, 0.25, 0.01, key="gamma",
                          persist_state="session")
    else:
        eps = st.slider("ε (L∞ budget)", 0.0, 0.7, 0.3, 0.01, key="eps", persist_state="session")
    if attack not in ("fgsm", "pgd"):
        target = st.selectbox("Target class", range(10), index=(label + 1) % 10, format_func=lambda c: names[c],
                              key=f"target_{label}", help="Default (y+1) mod 10, as in the paper.")
    if attack == "itgsm":
        steps = st.slider("Steps", 1, 50, 10, key="steps", persist_state="session")

source_model = models_named([source], dataset)[source]
start = time.perf_counter()
adv, provenance = attack_image(source_model, x, label, attack, eps, target, steps, gamma=gamma)
if DEVICE == "cuda":
    torch.cuda.synchronize()
elapsed = time.perf_counter() - start
st.caption(f"{caption} · generated on **{DEVICE}** in {elapsed * 1000:.0f} ms · "
           f"‖δ‖∞ = {provenance['linf']:.3f}, ‖δ‖₂ = {provenance['l2']:.2f}"
           + (f", {provenance['pixels_changed']} pixels changed" if attack == "jsma" else ""))
st.plotly_chart(figures.image_figure([x[0, 0].cpu().numpy(), adv[0, 0].cpu().numpy(),
                                      (adv - x)[0, 0].cpu().numpy()],
                                     ["original", "adversarial", "perturbation"], signed_last=True),
                width="stretch", key="images")

models = models_named(list(dict.fromkeys([source, *chosen])), dataset)
views = explain(models, adv, label, "gradient-logsum")
with torch.no_grad():
    clean = {n: torch.softmax(m(x), 1)[0].cpu() for n, m in models.items()}
rows = []
for name, view in views.items():
    probs = view["probs"]
    rows.append({"model": name, "role": "white-box" if name == source else "transfer",
                 "clean prediction": names[int(clean[name].argmax())], "adversarial prediction": names[int(probs.argmax())],
                 "p(true)": float(probs[label]),
                 "p(target)": float(probs[target]) if target is not None else None,
                 "fooled": int(probs.argmax()) != label})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={"p(true)": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
                            "p(target)": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})

if attack == "itgsm":
    st.subheader("The iteration path")
    path, _ = itgsm_path(source_model, x, torch.tensor([target], device=x.device), step=max(eps / 4, 1e-3),
                      steps=steps, eps=eps)
    shown = sorted({round(i * steps / min(steps, 7)) for i in range(min(steps, 7) + 1)})
    st.plotly_chart(figures.image_figure([path[i][0, 0].cpu().numpy() for i in shown],
                                         [f"iteration {i}" for i in shown]), width="stretch", key="path_images")
    with torch.no_grad():
        path_probs = {n: torch.softmax(m(path.flatten(0, 1)), 1)[:, target].cpu().numpy() for n, m in models.items()}
    st.plotly_chart(figures.iteration_path_figure(path_probs, names[target], source), width="stretch",
                    key="path_probs")

st.subheader("Saliency of the adversarial image (∇ₓ Σ log p, one shared scale)")
maps, scales = normalise([v["map"] for v in views.values()], shared=True, signed=True)
st.plotly_chart(figures.saliency_grid(adv[0, 0].cpu().numpy(), maps, list(views), True, scales), width="stretch",
                key="adv_saliency")

record = {**provenance, "dataset": dataset, "source_model": source, "source_sha256": cards[source]["sha256"],
          "image": caption, "png": "16-bit grey, pixel value = PNG value / 65535",
          "predictions": {r["model"]: r["adversarial prediction"] for r in rows}}
stem = f"{source}-{attack}-" + (f"gamma{gamma:g}" if attack == "jsma" else f"eps{eps:g}")
c1, c2 = st.columns(2)
c1.download_button("Download adversarial PNG (lossless)", to_png16(adv), f"{stem}.png", "image/png",
                   on_click="ignore", key="png")
c2.download_button("Download provenance JSON", json.dumps(record, indent=2), f"{stem}.json", "application/json",
                   on_click="ignore", key="json")
