"""Saliency maps of several models on the same images, and normalisation that can keep one shared scale.

Captum's own visualisation scales each map by its own maximum, which hides exactly the paper's effect
(regularized models have far smaller, smoother input gradients); `normalise` offers both.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import nullcontext

import numpy as np
import torch
from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from gradviz.attribution.measures import input_gradient

METHODS = {
    "gradient-logsum": "Input gradient of Σₖ log pₖ (the paper's figures)",
    "gradient-ce": "Input gradient of the true-label cross-entropy (the paper's penalty)",
    "gradient-logp": "Input gradient of the chosen class's log-probability",
    "saliency": "captum Saliency (gradient of the class logit)",
    "integrated-gradients": "captum IntegratedGradients (black baseline)",
    "smoothgrad": "captum SmoothGrad (NoiseTunnel over Saliency)",
    "guided-backprop": "captum GuidedBackprop",
    "input-x-gradient": "captum InputXGradient",
}
HOOKED = {"guided-backprop"}  # methods that register hooks on the model: never run two at once on one model
_locks: dict[int, threading.Lock] = defaultdict(threading.Lock)


def _captum(model: nn.Module, x: torch.Tensor, method: str, target: torch.Tensor, seed: int) -> torch.Tensor:
    if method == "saliency":
        return Saliency(model).attribute(x, target=target, abs=False)
    if method == "integrated-gradients":
        return IntegratedGradients(model).attribute(x, target=target, n_steps=32)
    if method == "smoothgrad":
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return NoiseTunnel(Saliency(model)).attribute(x, target=target, nt_type="smoothgrad", nt_samples=16,
                                                          stdevs=0.15, abs=False)
    if method == "guided-backprop":
        return GuidedBackprop(model).attribute(x, target=target)
    if method == "input-x-gradient":
        return InputXGradient(model).attribute(x, target=target)
    raise ValueError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}")


def saliency_map(model: nn.Module, x: torch.Tensor, method: str, label: torch.Tensor,
                 cls: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Signed saliency [N, 28, 28] of a batch; `label` is the true class, `cls` the class to explain
    (defaults to the label)."""
    cls = label if cls is None else cls
    if method == "gradient-ce":
        out = input_gradient(model, x, label, "ce")
    elif method == "gradient-logsum":
        out = input_gradient(model, x, None, "logsum")
    elif method == "gradient-logp":
        out = input_gradient(model, x, cls, "logp")
    else:
        with _locks[id(model)] if method in HOOKED else nullcontext():
            out = _captum(model, x.detach().clone(), method, cls, seed)
    return out.detach()[:, 0]


def normalise(maps: list[np.ndarray], shared: bool = True, signed: bool = True,
              percentile: float = 100.0) -> tuple[list[np.ndarray], list[float]]:
    """Scale maps to [-1, 1] (signed) or [0, 1] (absolute), by one shared scale or each by its own.

    The scale is the `percentile` of |values| (100 = the maximum); returns the maps and the scale each
    was divided by, so a figure can say what full colour means.
    """
    maps = [np.asarray(m, dtype=np.float64) if signed else np.abs(np.asarray(m, dtype=np.float64)) for m in maps]
    scales = [float(np.percentile(np.abs(m), percentile)) for m in maps]
    if shared:
        scales = [max(scales)] * len(maps)
    low = -1.0 if signed else 0.0
    return [np.clip(m / s, low, 1.0) if s > 0 else np.zeros_like(m) for m, s in zip(maps, scales)], scales


def explain(models: dict[str, nn.Module], x: torch.Tensor, label: int, method: str,
            cls: int | None = None) -> dict[str, dict]:
    """Per model: class probabilities and the signed saliency map of one image [1, 1, 28, 28]."""
    y = torch.tensor([label], device=x.device)
    c = torch.tensor([label if cls is None else cls], device=x.device)
    out = {}
    for name, model in models.items():
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)[0].cpu().numpy()
        out[name] = {"probs": probs, "map": saliency_map(model, x, method, y, c)[0].cpu().numpy()}
    return out
