"""The sanity check of Adebayo et al. (NeurIPS 2018), live: maps after each cascading randomisation step.

A method whose maps stay alike when every weight of the model has been replaced by random numbers does not
explain what the model learned (Guided Backprop is the famous case: it recovers edges of the image from any
weights). Such a method is flagged here and beside its name on the Saliency page.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradviz.attribution.methods import get_method
from gradviz.attribution.metrics import unit_max
from gradviz.attribution.randomisation import randomised_maps
from gradviz.attribution.similarity import similarity

# Rank correlation of |maps| with the trained model's, averaged over the cascade, at or above which a method is
# flagged (Quantus's MPRT score). On the first 64 test images of the committed MNIST and Fashion-MNIST zoos (normal,
# gradreg, advtrain, distilled) the input-gradient methods score 0.01-0.30, Guided Backprop 0.50-0.68, and
# IntegratedGradients and Input×Gradient 0.88-0.99: multiplying by the image keeps its shape whatever the
# weights (Adebayo et al. saw the same). The threshold sits halfway between the groups.
FAIL_SIMILARITY = 0.4


@dataclass
class SanityResult:
    """Layers randomised (top first), the maps [1 + L, N, H, W] of the trained model then after each step,
    and the similarity [L, N] of each step's |map| to the trained model's."""

    method: str
    layers: list[str]
    maps: np.ndarray
    similarity: np.ndarray

    @property
    def mean_similarity(self) -> float:
        """Mean similarity over the cascade and the images: a map that explains the weights falls at the first
        step; Guided Backprop stays alike while the top layers are random (Adebayo et al.'s figure 2)."""
        return float(np.nanmean(self.similarity))

    @property
    def fails(self) -> bool:
        return self.mean_similarity >= FAIL_SIMILARITY


def cascading_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, settings: dict | None = None,
                    seed: int = 0, kind: str = "spearman") -> SanityResult:
    """Explain `x` with the trained model and with ever more randomised copies, top layer down."""
    entry = get_method(method)
    settings = entry.settings(settings)

    def explain(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return entry.attribute(m, xs, ys, cls, seed, **settings)

    trained = explain(model, x, y, y)
    base = unit_max(trained).abs()
    layers, maps, rows = [], [trained.cpu().numpy()], []
    for layer, damaged in randomised_maps(explain, model, x, y, "cascading", seed):
        layers.append(layer)
        maps.append(damaged.cpu().numpy())
        rows.append(similarity(base, unit_max(damaged).abs(), kind))
    return SanityResult(method, layers, np.stack(maps), np.stack(rows))
