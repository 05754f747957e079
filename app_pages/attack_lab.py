"""Attack lab: attack one image live with a chosen source model and see how every selected model reacts."""
import json
import time

import pandas as pd
import streamlit as st
import torch

from app_pages.common import (
    DEVICE,
    LiveProgress,
    attack_controls,
    cards_of,
    models_named,
    pick_dataset,
    pick_image,
    pick_models,
)
from gradviz.attacks.grids import attack_path
from gradviz.attacks.registry import REGISTRY, get_attack, pixels_changed
from gradviz.attribution.methods import explain, normalise
from gradviz.data.datasets import class_names
from gradviz.data.images import to_png
from gradviz.evaluation import figures

st.title("Attack lab")
dataset = pick_dataset()
names = class_names(dataset)
cards = cards_of(dataset)
left, right = st.columns([1, 2])
with left:
    x, label, caption = pick_image(dataset)
with right:
    chosen = pick_models(dataset, label="Models that see the adversarial image")
    normal = next((i for i, c in enumerate(cards.values()) if c["defense"] == "normal"), 0)
    source = st.selectbox("Source model (the attack is made on it)", list(cards), index=normal,
                          help="Gradient attacks follow its input gradient; a black-box attack (Square) reads only "
                               "its outputs.",
                          key=f"source_{dataset}", persist_state="session")
    attack = st.radio("Attack", list(REGISTRY), format_func=lambda a: REGISTRY[a].label, horizontal=True,
                      key="attack", persist_state="session")
    entry = get_attack(attack)
    st.caption(entry.reference)
    eps, params = attack_controls(entry, "lab")
    target = None
    if entry.targeted:
        target = st.selectbox("Target class", range(len(names)), index=(label + 1) % len(names),
                              format_func=lambda c: names[c], key=f"target_{dataset}_{label}",
                              help=f"Default (y+1) mod {len(names)}, as in the paper.")

source_model = models_named([source], dataset)[source]
aim = torch.tensor([label if target is None else target], device=x.device)
bar = LiveProgress(f"{entry.label} on {source}", upper_bound=not entry.eps_bounded) if entry.multi_step else None
start = time.perf_counter()
adv = entry.generate(source_model, x, aim, eps, progress=bar, **params)
if DEVICE == "cuda":
    torch.cuda.synchronize()
elapsed = time.perf_counter() - start
if bar is not None:
    bar.close()
provenance = {**entry.describe(eps, params), "true_class": label, "target_class": target,
              "linf": float((adv - x).abs().max()), "l2": float((adv - x).norm()),
              "pixels_changed": int(pixels_changed(x, adv)[0])}
st.caption(f"{caption} · generated on **{DEVICE}** in {elapsed * 1000:.0f} ms · "
           f"‖δ‖∞ = {provenance['linf']:.3f}, ‖δ‖₂ = {provenance['l2']:.2f}, "
           f"{provenance['pixels_changed']} pixels changed")
st.plotly_chart(figures.image_figure([figures.display(x), figures.display(adv),
                                      figures.display(adv - x)],
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

if entry.iterates is not None and eps:
    st.subheader("The iteration path")
    path, _ = attack_path(source_model, x, aim, entry, eps, **params)
    steps = len(path) - 1
    shown = sorted({round(i * steps / min(steps, 7)) for i in range(min(steps, 7) + 1)})
    st.plotly_chart(figures.image_figure([figures.display(path[i]) for i in shown],
                                         [f"iteration {i}" for i in shown]), width="stretch", key="path_images")
    followed = label if target is None else target
    with torch.no_grad():
        path_probs = {n: torch.softmax(m(path.flatten(0, 1)), 1)[:, followed].cpu().numpy()
                      for n, m in models.items()}
    st.plotly_chart(figures.iteration_path_figure(path_probs, names[followed], source), width="stretch",
                    key="path_probs")

st.subheader("Saliency of the adversarial image (∇ₓ Σ log p, one shared scale)")
maps, scales = normalise([v["map"] for v in views.values()], shared=True, signed=True)
st.plotly_chart(figures.saliency_grid(figures.display(adv), maps, list(views), True, scales), width="stretch",
                key="adv_saliency")

record = {**provenance, "dataset": dataset, "source_model": source, "source_sha256": cards[source]["sha256"],
          "image": caption, "png": "16-bit grey, pixel value = PNG value / 65535",
          "predictions": {r["model"]: r["adversarial prediction"] for r in rows}}
stem = f"{source}-{attack}" + (f"-eps{eps:g}" if eps is not None else "") + "".join(f"-{k}{v:g}" for k, v in params.items())
c1, c2 = st.columns(2)
c1.download_button("Download adversarial PNG (grey: 16-bit, lossless; colour: 8-bit RGB)", to_png(adv),
                   f"{stem}.png", "image/png",
                   on_click="ignore", key="png")
c2.download_button("Download provenance JSON", json.dumps(record, indent=2), f"{stem}.json", "application/json",
                   on_click="ignore", key="json")
