"""Which images to show a person first when they annotate where a model must not look.

A person's time is the scarce thing in an annotation loop (Friedrich et al. 2023 count it in explanations), so the
page opens on the images where the model's input gradient sits most off the object (the likeliest wrong reasons),
or on those it is most sure of. The object is the dataset's evidence region where it has one, else the image's ink.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gradviz.attribution.measures import input_gradient
from gradviz.attribution.metrics import ink_mask, relevance_mass

ORDERS = {"off-object": "saliency most off the object first", "confident": "most confident first"}


def off_object_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     region: torch.Tensor | None = None, batch_size: int = 250) -> torch.Tensor:
    """Per image, the share of |∇ₓ log p(y)| outside the object (`region` [N, H, W], True = object; default the
    ink); 0 for an all-zero gradient."""
    shares = []
    for start in range(0, len(x), batch_size):
        xs, ys = x[start:start + batch_size], y[start:start + batch_size]
        obj = ink_mask(xs) if region is None else region[start:start + batch_size].to(xs.device)
        grad = input_gradient(model, xs, ys, "logp").abs().sum(1)
        shares.append(np.nan_to_num(relevance_mass(grad, ~obj), nan=0.0))  # NaN: an all-zero gradient
    return torch.from_numpy(np.concatenate(shares))


@torch.no_grad()
def confidence(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Per image, the largest softmax probability."""
    return torch.cat([torch.softmax(model(x[i:i + batch_size]), 1).amax(1) for i in range(0, len(x), batch_size)])


def annotation_order(model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: str = "off-object",
                     region: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of `x` in the order a person should annotate them (see ORDERS)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; use {' or '.join(ORDERS)}")
    score = off_object_share(model, x, y, region) if order == "off-object" else confidence(model, x)
    return score.argsort(descending=True, stable=True)
