"""Adopting a finished pair of models (a defended model and the normal model its transfer attacks come from) into
the committed zoo at lower precision, with the numbers that show the rounding changes nothing that matters.

The paper-scale pair (FC 1,024) is 12.8 MB in float32 each: too big for the zoo as it is. Stored in float16 it is
half that; the cards record clean accuracy and the headline (FGSM from the source at ε = 0.4) before and after the
rounding, and tests/nets/test_zoo.py re-measures both from the committed files.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from gradviz.attacks.registry import REGISTRY
from gradviz.data.datasets import load_dataset
from gradviz.evaluation.runs.matrix import correct_counts
from gradviz.nets.cards import list_models
from gradviz.nets.store import STORED_DTYPES, load_model, round_to_stored, save_model
from gradviz.paths import ZOO_DIR
from gradviz.training.loop import accuracy

CLEAN_TOLERANCE = 0.0005  # the rounding may move clean accuracy by less than 0.05 points …
HEADLINE_TOLERANCE = 0.005  # … and the headline transfer accuracy by less than this
ZOO_ROLE = "paper-scale"  # cards of adopted pairs; the reproduction's one-model-per-defense zoo leaves them out


def transfer_accuracy(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      batch_size: int = 500) -> float:
    """Accuracy of `target` on FGSM examples made on `source` (true labels): the registry's FGSM and evaluate's
    counter, batch by batch, so the number is the one `evaluate` reports."""
    source.eval()
    target.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        correct += correct_counts(target, REGISTRY["fgsm"].sweep(source, xb, yb, [eps])[eps], yb, batch_size)
    return correct / len(x)


def _rounded_before(card: dict) -> bool:
    """Whether the model's weights were rounded already (a carried model): its "float32" weights are not the
    original's."""
    return card.get("stored_dtype", "float32") != "float32"


def _float32_clean(card: dict, measured: float, all_images: bool) -> float:
    """Clean accuracy of the float32 original: a model carried between machines was rounded already, and its card
    kept the original's number on the whole test split — the one the rounding must be compared with."""
    kept = card.get("float32_clean_test_accuracy")
    return kept if _rounded_before(card) and kept is not None and all_images else measured


def _zoo_names(zoo_dir: Path) -> set[str]:
    return {c["name"] for c in list_models([zoo_dir])} if zoo_dir.is_dir() else set()


def adopt_pair(target: str, source: str, stored_dtype: str = "float16", eps: float = 0.4,
               zoo_dir: str | Path = ZOO_DIR, n: int | None = None) -> dict:
    """Copy the user models `target` and `source` into `zoo_dir` stored as `stored_dtype`; returns the check
    (clean accuracy and FGSM-from-source accuracy at `eps` on the first `n` test images, before and after).

    Refused: an unknown precision, a name already in the zoo, models of different datasets, and a rounding that
    moves either number past its tolerance (nothing is written then)."""
    if stored_dtype not in STORED_DTYPES or stored_dtype == "float32":
        raise ValueError(f"stored_dtype must be a lower precision than float32: {', '.join(STORED_DTYPES)}")
    zoo_dir = Path(zoo_dir)
    taken = _zoo_names(zoo_dir) & {target, source}
    if taken:
        raise ValueError(f"{', '.join(sorted(taken))} already in the zoo at {zoo_dir}")
    (t_model, t_card), (s_model, s_card) = load_model(target), load_model(source)
    if t_card["dataset"] != s_card["dataset"]:
        raise ValueError(f"{target} is a {t_card['dataset']} model, {source} a {s_card['dataset']} one")
    x, y = load_dataset(t_card["dataset"], "test")
    all_images = n is None or n >= len(x)
    x, y = x[:n], y[:n]
    t_round, s_round = (round_to_stored(copy.deepcopy(m), stored_dtype) for m in (t_model, s_model))
    check = {"source": source, "eps": eps, "images": len(x), "stored_dtype": stored_dtype,
             "float32": transfer_accuracy(s_model, t_model, x, y, eps),
             "stored": transfer_accuracy(s_round, t_round, x, y, eps)}
    clean = {name: (_float32_clean(card, accuracy(full, x, y), all_images), accuracy(small, x, y))
             for name, full, small, card in ((target, t_model, t_round, t_card), (source, s_model, s_round, s_card))}
    if _rounded_before(t_card):  # carried: "float32" is these weights loaded as float32
        check["rounded_before"] = t_card["stored_dtype"]
    problems = [f"{name}: clean {a:.4f} → {b:.4f}" for name, (a, b) in clean.items() if abs(a - b) >= CLEAN_TOLERANCE]
    if abs(check["float32"] - check["stored"]) >= HEADLINE_TOLERANCE:
        problems.append(f"FGSM from {source} at ε = {eps}: {check['float32']:.4f} → {check['stored']:.4f}")
    if problems:
        raise ValueError(f"{stored_dtype} rounding changes too much ({'; '.join(problems)}); keep float32")
    for name, model, card in ((target, t_round, t_card), (source, s_round, s_card)):
        full, small = clean[name]
        extra = {"rounding_check": check, "transfer_source": source} if name == target else {}
        save_model(model, {**card, **extra, "stored_dtype": stored_dtype, "zoo_role": ZOO_ROLE,
                           "float32_clean_test_accuracy": full, "clean_test_accuracy": small,
                           "clean_accuracy_images": len(x)}, zoo_dir)
    return {"clean": clean, **check}
