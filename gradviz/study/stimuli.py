"""Build a stimulus set from the attack pipeline: random class-balanced images, every condition, provenance.

A condition is (source model, attack, ε); an item is (test image, target class). Every item is attacked in
every condition, so the Latin-square lists can show each participant each item once, in one condition.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from skimage.metrics import structural_similarity

from gradviz.attacks.registry import get_attack, pixels_changed
from gradviz.data.classes import BUILTIN_DATASETS
from gradviz.data.datasets import dataset_names, load_dataset, num_classes
from gradviz.data.images import to_png, to_png16
from gradviz.nets.cards import list_models
from gradviz.nets.store import load_model

DEFAULT_DEFENSES = ("normal", "distilled", "advtrain", "gradreg")
# Study images take smaller, more numerous iterated-TGSM steps than evaluation (20 of ε/8): smoother images.
STIMULUS_PARAMS = {"itgsm": {"steps": 20, "step_scale": 0.125}}


BUILTIN_STUDY_DATASETS = ("mnist", "fashion-mnist")  # the ground-truth datasets are for auditing models


def study_datasets() -> tuple[str, ...]:
    """What people can rate: MNIST, Fashion-MNIST and every registered dataset (grey or colour)."""
    return BUILTIN_STUDY_DATASETS + tuple(d for d in dataset_names() if d not in BUILTIN_DATASETS)


@dataclass
class StimulusConfig:
    dataset: str = "mnist"
    models: list[str] = field(default_factory=list)  # empty: the zoo's normal, distilled, advtrain, gradreg
    attacks: list[str] = field(default_factory=lambda: ["itgsm", "tgsm"])
    eps: list[float] = field(default_factory=lambda: [0.3])
    items_per_class: int = 2
    attention_checks: int = 4
    attack_params: dict[str, dict] = field(default_factory=lambda: dict(STIMULUS_PARAMS))
    seed: int = 0

    def conditions(self) -> list[tuple[str, float | None, dict]]:
        """(attack, ε, settings) of every condition per source model; a pixel-budget attack has no ε sweep."""
        out = []
        for attack in self.attacks:
            entry = get_attack(attack)
            params = entry.settings(self.attack_params.get(attack))
            out += [(attack, entry.check_eps(e), params) for e in (self.eps if entry.eps_bounded else [None])]
        return out

    def model_names(self) -> list[str]:
        if self.models:
            return self.models
        zoo = {c["defense"]: c["name"] for c in list_models() if c["dataset"] == self.dataset and c["origin"] == "zoo"}
        missing = [d for d in DEFAULT_DEFENSES if d not in zoo]
        if missing:
            raise ValueError(f"the zoo has no {', '.join(missing)} model for {self.dataset}; pass models explicitly")
        return [zoo[d] for d in DEFAULT_DEFENSES]

    def set_id(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _sample_items(y: torch.Tensor, per_class: int, rng: np.random.Generator, exclude: set[int],
                  classes: int) -> list[int]:
    chosen = []
    for c in range(classes):
        pool = [i for i in np.flatnonzero(y.numpy() == c) if int(i) not in exclude]
        chosen += [int(i) for i in rng.choice(pool, size=per_class, replace=False)]
    return chosen


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two images [C, H, W] (a colour image's channels averaged, as skimage does with channel_axis)."""
    a, b = a.cpu().numpy(), b.cpu().numpy()
    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], data_range=1.0))
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=0))


def _png(image: torch.Tensor) -> bytes:
    """A stimulus [C, H, W] as a PNG: grey 16-bit (value / 65535), colour 8-bit RGB (value / 255)."""
    return to_png(image.cpu().numpy().transpose(1, 2, 0)) if image.shape[0] == 3 else to_png16(image)


def build_stimuli(config: StimulusConfig) -> list[dict]:
    """Rows for the stimuli table: one per (item, condition) plus the attention-check items."""
    if config.dataset not in study_datasets():
        raise ValueError(f"the study shows {', '.join(study_datasets())} images, not {config.dataset!r}")
    classes = num_classes(config.dataset)
    names = config.model_names()
    models = {n: load_model(n) for n in names}
    x, y = load_dataset(config.dataset, "test")
    rng = np.random.default_rng(config.seed)
    set_id = config.set_id()
    items = _sample_items(y, config.items_per_class, rng, exclude=set(), classes=classes)
    rows = []
    xi, yi = x[items], y[items]
    ti = (yi + 1) % classes
    conditions = config.conditions()
    for name, (model, card) in models.items():
        for attack, eps, params in conditions:
            entry = get_attack(attack)
            adv = entry.generate(model, xi, ti if entry.targeted else yi, eps, config.seed, **params)
            with torch.no_grad():
                preds = {n: m(adv).argmax(1).tolist() for n, (m, _) in models.items()}
            changed = pixels_changed(xi, adv)
            condition = f"{name}|{attack}|{eps:g}" if entry.eps_bounded else f"{name}|{attack}|{entry.budget(eps, params)}"
            for k, index in enumerate(items):
                target = int(ti[k]) if entry.targeted else None
                provenance = {"set_id": set_id, "dataset": config.dataset, "test_index": index,
                              "source_model": name, "source_sha256": card["sha256"],
                              **entry.describe(eps, params, config.seed), "true_class": int(yi[k]),
                              "target_class": target, "pixels_changed": int(changed[k]),
                              "predictions": {n: p[k] for n, p in preds.items()},
                              "png": "16-bit grey, value / 65535" if xi.shape[1] == 1 else "8-bit RGB, value / 255"}
                rows.append({"stimulus_id": f"{set_id}-{index}-{hashlib.sha1(condition.encode()).hexdigest()[:8]}",
                             "set_id": set_id, "item_id": f"{index}>{int(ti[k])}", "condition": condition,
                             "kind": "adversarial", "source_model": name, "source_sha256": card["sha256"],
                             "attack": attack, "eps": eps, "true_class": int(yi[k]),
                             "target_class": target, "l2": float((adv[k] - xi[k]).norm()),
                             "ssim": _ssim(adv[k], xi[k]), "png": _png(adv[k]),
                             "provenance": json.dumps(provenance)})
    rows += _attention_items(config, models, x, y, rng, set(items), set_id)
    return rows


def _attention_items(config, models, x, y, rng, exclude, set_id) -> list[dict]:
    """Clean test digits with an obvious answer: drawn at random from those every model classifies correctly
    with ≥ 99% confidence, topped up with the most confidently classified ones if too few qualify."""
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(x[:2000]), 1) for m, _ in models.values()])
    sure = probs.gather(2, y[:2000].view(1, -1, 1).expand(len(models), -1, 1)).squeeze(2).min(0).values
    order = [i for i in sure.argsort(descending=True).tolist() if i not in exclude]
    confident = [i for i in order if sure[i] > 0.99]
    if len(confident) >= config.attention_checks:
        chosen = rng.choice(confident, size=config.attention_checks, replace=False).tolist()
    else:
        chosen = order[:config.attention_checks]
    rows = []
    for index in chosen:
        provenance = {"set_id": set_id, "dataset": config.dataset, "test_index": index, "kind": "attention",
                      "true_class": int(y[index]), "min_confidence": float(sure[index])}
        rows.append({"stimulus_id": f"{set_id}-attention-{index}", "set_id": set_id, "item_id": f"attention-{index}",
                     "condition": "attention", "kind": "attention", "source_model": None, "source_sha256": None,
                     "attack": None, "eps": 0.0, "true_class": int(y[index]), "target_class": None, "l2": 0.0,
                     "ssim": 1.0, "png": _png(x[index]), "provenance": json.dumps(provenance)})
    return rows
