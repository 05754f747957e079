"""Damaged copies of a model for the model-parameter randomisation test (Adebayo et al., NeurIPS 2018).

A faithful explanation changes when the weights it explains are replaced by random ones; one that does not is
an edge detector. A layer is a convolution or linear layer together with the normalisation that follows it (as in
Adebayo's figures; randomising a batch norm alone is a step of its own in Quantus, which doubles the cost for
little), from the logits down. Each layer's reset is seeded by `seed + 1` like Quantus's, so on a network
without normalisation layers both produce the same weights (tests/attribution/test_metrics.py).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from gradviz.nets.architecture import frozen

ORDERS = ("cascading", "independent")


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def layer_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """(layer name, the modules it resets), top (logits) first: each module with parameters to reset, a
    normalisation module joined to the layer before it."""
    groups: list[tuple[str, list[str]]] = []
    for name, module in model.named_modules():
        if not name or not hasattr(module, "reset_parameters"):
            continue
        if isinstance(module, _NORMS) and groups:
            groups[-1][1].append(name)
        else:
            groups.append((name, [name]))
    return groups[::-1]


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the layers a randomisation resets, top (logits) first."""
    return [name for name, _ in layer_groups(model)]


def randomised_models(model: nn.Module, order: str = "cascading", seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """(layer, model) for each layer, top first: `cascading` keeps every layer randomised so far; `independent`
    randomises that layer alone. The given model is never changed."""
    if order not in ORDERS:
        raise ValueError(f"unknown randomisation order {order!r}; use {' or '.join(ORDERS)}")
    damaged = frozen(copy.deepcopy(model))
    modules = dict(damaged.named_modules())
    for name, members in layer_groups(model):
        if order == "independent":
            damaged = frozen(copy.deepcopy(model))
            modules = dict(damaged.named_modules())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            for member in members:
                modules[member].reset_parameters()
        yield name, damaged


def randomised_layers(model: nn.Module, order: str = "cascading") -> list[tuple[str, ...]]:
    """Per step of `randomised_models`, the layers that are random in it. The first step of both orders is the same
    model (the top layer alone), which is how a caller can make its maps once for both."""
    names = randomisable_layers(model)
    return [tuple(names[:i + 1]) if order == "cascading" else (name,) for i, name in enumerate(names)]


def randomised_maps(explain, model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: str = "cascading",
                    seed: int = 0, made: dict | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(layer, maps [N, H, W]) of the true class for each randomisation step, top layer first; `explain` is
    `(model, x, y, cls) -> maps`. `made` (keyed by the random layers) keeps maps for the next call on the same
    images and seed, so the cascading and the independent test share their common step."""
    made = {} if made is None else made
    for (layer, damaged), random in zip(randomised_models(model, order, seed), randomised_layers(model, order)):
        if random not in made:
            made[random] = explain(damaged, x, y, y)
        yield layer, made[random]
