"""Before and after an annotation loop: does the model still use what a person said it must not?

Four numbers per model, on held-out test images: accuracy on the test set as it is (a decoy's swatch codes a random
class there), accuracy without the shortcut (a decoy's base images, no swatch; another masked dataset's images with
the marked region replaced by noise), the share of |∇ₓ log p(true)| on the marked region, and how often the
prediction follows a decoy's swatch where it codes another class (Schramowski et al. 2020; Friedrich et al. 2023's
"wrong reason" share is the third).
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from gradviz.attribution.measures import input_gradient
from gradviz.data.datasets import load_dataset, load_masks
from gradviz.data.ground_truth import BASE, DECOYS
from gradviz.evaluation.runs.matrix import correct_counts
from gradviz.evaluation.runs.shortcuts import shortcut_share

NOISE_SEED = 0


def wrong_region_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor,
                       batch_size: int = 250) -> float:
    """Share of Σ|∇ₓ log p(true)| (over the images together) that lies on the marked region (`masks` [N, 1, H, W])."""
    inside = total = 0.0
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        grad = input_gradient(model, x[part], y[part], "logp").abs()
        inside += float((grad * masks[part].to(grad.dtype)).sum())
        total += float(grad.sum())
    return inside / total if total > 0 else float("nan")


def without_shortcut(dataset: str, x: torch.Tensor, masks: torch.Tensor, n: int) -> torch.Tensor:
    """The test images without what the masks mark: a decoy's base images, else the marked pixels as seeded noise."""
    if dataset in DECOYS:
        return load_dataset(BASE[dataset], "test")[0][:n].to(x.device)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(x.device)
    return torch.where(masks.expand_as(x), noise, x)


def shortcut_table(models: dict[str, nn.Module], dataset: str, n: int = 1000, device: str = "cpu") -> pd.DataFrame:
    """One row per model: the four numbers of the module docstring on the first `n` test images of `dataset`."""
    masks = load_masks(dataset, "test")
    if masks is None:
        raise ValueError(f"{dataset} has no masks on its test images: nothing says where a model must not look")
    x, y = load_dataset(dataset, "test")
    x, y, masks = x[:n].to(device), y[:n].to(device), masks[:n].to(device)
    plain = without_shortcut(dataset, x, masks, n)
    rows = []
    for name, model in models.items():
        rows.append({"model": name, "accuracy": correct_counts(model, x, y, 250) / len(x),
                     "accuracy without the shortcut": correct_counts(model, plain, y, 250) / len(x),
                     "share of |gradient| on the marked region": wrong_region_share(model, x, y, masks),
                     "follows the swatch": shortcut_share(model, x, y, masks) if dataset in DECOYS else float("nan")})
    return pd.DataFrame(rows)
