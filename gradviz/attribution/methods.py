"""Saliency maps of several models on the same images, and normalisation that can keep one shared scale.

Captum's own visualisation scales each map by its own maximum, which hides exactly the paper's effect
(regularized models have far smaller, smoother input gradients); `normalise` offers both.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradviz.attribution.measures import input_gradient
from gradviz.params import Param, checked_settings

Explain = Callable[..., torch.Tensor]  # (model, x, label, cls, seed, **settings) -> attributions [N, 1, H, W]


# How a colour image's per-channel maps become the one map a page shows and a metric scores. The default keeps,
# at each pixel, the channel with the largest |attribution|, with its sign: a grey image's map is unchanged, and
# a colour edge that only one channel carries is not diluted by the two that do not (as a sum or mean would be).
CHANNEL_REDUCTIONS = {
    "max-abs": "the channel with the largest |value| at each pixel, signed (default)",
    "sum": "the sum over channels (Captum's visualisation default)",
    "mean": "the mean over channels",
}
DEFAULT_REDUCTION = "max-abs"


def reduce_channels(maps: torch.Tensor, how: str = DEFAULT_REDUCTION) -> torch.Tensor:
    """[N, C, H, W] → [N, H, W] by `how` (CHANNEL_REDUCTIONS); one channel is returned as it is."""
    if how not in CHANNEL_REDUCTIONS:
        raise ValueError(f"unknown channel reduction {how!r}; use {', '.join(CHANNEL_REDUCTIONS)}")
    if maps.shape[1] == 1:
        return maps[:, 0]
    if how == "sum":
        return maps.sum(1)
    if how == "mean":
        return maps.mean(1)
    return maps.gather(1, maps.abs().argmax(1, keepdim=True))[:, 0]


@dataclass(frozen=True)
class SaliencyMethod:
    """One saliency method. `takes_class`: it explains a chosen class (otherwise the true label's loss or all
    classes at once); `hooks_model`: it registers hooks on the model, so two never run at once on one model."""

    name: str
    label: str
    takes_class: bool
    explain: Explain
    params: tuple[Param, ...] = ()
    hooks_model: bool = False

    def settings(self, given: Mapping[str, float] | None = None) -> dict:
        return checked_settings(self.name, self.params, given)

    def attribute(self, model: nn.Module, x: torch.Tensor, label: torch.Tensor, cls: torch.Tensor | None = None,
                  seed: int = 0, channels: str = DEFAULT_REDUCTION, **params) -> torch.Tensor:
        """Signed attributions [N, H, W] of a batch; `label` is the true class, `cls` the class to explain
        (defaults to the label; ignored by methods that do not take a class). A colour image's three maps become
        one by `channels` (CHANNEL_REDUCTIONS)."""
        return reduce_channels(self.attribute_channels(model, x, label, cls, seed, **params), channels)

    def attribute_channels(self, model: nn.Module, x: torch.Tensor, label: torch.Tensor,
                           cls: torch.Tensor | None = None, seed: int = 0, **params) -> torch.Tensor:
        """Signed attributions [N, C, H, W], one map per input channel (the per-channel view of a colour image)."""
        settings = self.settings(params)
        cls = label if cls is None else cls
        with _locks[id(model)] if self.hooks_model else nullcontext():
            out = self.explain(model, x.detach().clone(), label, cls, seed, **settings)
        return out.detach()


def _gradient_logsum(model, x, label, cls, seed):
    return input_gradient(model, x, None, "logsum")


def _gradient_ce(model, x, label, cls, seed):
    return input_gradient(model, x, label, "ce")


def _gradient_logp(model, x, label, cls, seed):
    return input_gradient(model, x, cls, "logp")


# captum is imported by the methods that use it, not with the registry: every CLI command reads the registry for
# its choices, and importing captum there doubled the start-up of commands that never explain anything.
def _saliency(model, x, label, cls, seed):
    from captum.attr import Saliency

    return Saliency(model).attribute(x, target=cls, abs=False)


def _integrated_gradients(model, x, label, cls, seed, n_steps):
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(x, target=cls, n_steps=n_steps)


def _smoothgrad(model, x, label, cls, seed, samples, stdev):
    from captum.attr import NoiseTunnel, Saliency

    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return NoiseTunnel(Saliency(model)).attribute(x, target=cls, nt_type="smoothgrad", nt_samples=samples,
                                                      stdevs=stdev, abs=False)


def _guided_backprop(model, x, label, cls, seed):
    from captum.attr import GuidedBackprop

    return GuidedBackprop(model).attribute(x, target=cls)


def _input_x_gradient(model, x, label, cls, seed):
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(x, target=cls)


REGISTRY: dict[str, SaliencyMethod] = {m.name: m for m in (
    SaliencyMethod("gradient-logsum", "Input gradient of Σₖ log pₖ (the paper's figures)", False, _gradient_logsum),
    SaliencyMethod("gradient-ce", "Input gradient of the true-label cross-entropy (the paper's penalty)", False,
                   _gradient_ce),
    SaliencyMethod("gradient-logp", "Input gradient of the chosen class's log-probability", True, _gradient_logp),
    SaliencyMethod("saliency", "captum Saliency (gradient of the class logit)", True, _saliency),
    SaliencyMethod("integrated-gradients", "captum IntegratedGradients (black baseline)", True,
                   _integrated_gradients,
                   (Param("n_steps", "Steps", 32, 4, 256, 1, "int", help="points on the path from black to the image"),)),
    SaliencyMethod("smoothgrad", "captum SmoothGrad (NoiseTunnel over Saliency)", True, _smoothgrad,
                   (Param("samples", "Noisy samples", 16, 1, 128, 1, "int", help="gradients averaged per image"),
                    Param("stdev", "Noise σ", 0.15, 0.0, 1.0, 0.01, help="Gaussian noise added to each sample"))),
    SaliencyMethod("guided-backprop", "captum GuidedBackprop", True, _guided_backprop, hooks_model=True),
    SaliencyMethod("input-x-gradient", "captum InputXGradient", True, _input_x_gradient),
)}
# The methods an interpretation run scores unless told otherwise: the paper's input gradient and the three that
# explanation papers compare it with most often.
DEFAULT_METHODS = ("gradient-logp", "integrated-gradients", "smoothgrad", "guided-backprop")
_locks: dict[int, threading.Lock] = defaultdict(threading.Lock)


def get_method(name: str) -> SaliencyMethod:
    """The registry entry called `name`, or a ValueError that lists the methods there are."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown saliency method {name!r}; choose from {', '.join(REGISTRY)}") from None


def saliency_map(model: nn.Module, x: torch.Tensor, method: str, label: torch.Tensor,
                 cls: torch.Tensor | None = None, seed: int = 0, **params) -> torch.Tensor:
    """Signed saliency [N, H, W] of a batch by the method called `method` (see SaliencyMethod.attribute)."""
    return get_method(method).attribute(model, x, label, cls, seed, **params)


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
            cls: int | None = None, **params) -> dict[str, dict]:
    """Per model: class probabilities and the signed saliency map of one image [1, 1, H, W]."""
    entry = get_method(method)
    y = torch.tensor([label], device=x.device)
    c = torch.tensor([label if cls is None else cls], device=x.device)
    out = {}
    for name, model in models.items():
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)[0].cpu().numpy()
        out[name] = {"probs": probs, "map": entry.attribute(model, x, y, c, **params)[0].cpu().numpy()}
    return out
