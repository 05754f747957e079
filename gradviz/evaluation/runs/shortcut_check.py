"""Before and after an annotation loop: does the model still use what a person said it must not?

Four numbers per model, on held-out test images: accuracy on the test set as it is (a decoy's swatch codes a random
class there), accuracy without the shortcut (a decoy's base images, no swatch; another masked dataset's images with
the marked region replaced by noise), the share of |∇ₓ log p(true)| on the marked region, and how often the
prediction follows a decoy's swatch where it codes another class (Schramowski et al. 2020; Friedrich et al. 2023's
"wrong reason" share is the third).
"""
from __future__ import annotations

import math

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
    data = ShortcutData.load(dataset, n, device)
    return pd.DataFrame([{"model": name, **data.measure(model)} for name, model in models.items()])


class ShortcutData:
    """The test images of a masked dataset with and without the shortcut, loaded once for any number of models."""

    def __init__(self, dataset: str, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor):
        self.dataset, self.x, self.y, self.masks = dataset, x, y, masks
        self.plain = without_shortcut(dataset, x, masks, len(x))

    @classmethod
    def load(cls, dataset: str, n: int | None = None, device: str = "cpu") -> ShortcutData:
        """The first `n` test images (all of them when None)."""
        masks = load_masks(dataset, "test")
        if masks is None:
            raise ValueError(f"{dataset} has no masks on its test images: nothing says where a model must not look")
        x, y = load_dataset(dataset, "test")
        n = len(x) if n is None else n
        return cls(dataset, x[:n].to(device), y[:n].to(device), masks[:n].to(device))

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The four numbers of the module docstring for one model."""
        n = len(self.x)
        return {"accuracy": correct_counts(model, self.x, self.y, 250) / n,
                "accuracy without the shortcut": correct_counts(model, self.plain, self.y, 250) / n,
                "share of |gradient| on the marked region": wrong_region_share(model, self.x, self.y, self.masks),
                "follows the swatch": (shortcut_share(model, self.x, self.y, self.masks) if self.dataset in DECOYS
                                       else float("nan"))}


def change_sentence(table: pd.DataFrame, before: str, after: str, n: int) -> str:
    """The before/after answer in one sentence: what fine-tuning did to accuracy without the shortcut (a change is
    called only beyond two standard errors of a difference of two accuracies on `n` images) and to the share of
    the gradient on the marked region."""
    rows = table.set_index("model")
    free, share = "accuracy without the shortcut", "share of |gradient| on the marked region"
    old, new = rows.at[before, free], rows.at[after, free]
    mean = (old + new) / 2
    noise = 2 * math.sqrt(max(2 * mean * (1 - mean) / n, 1e-12))
    if new - old > noise and rows.at[after, share] < rows.at[before, share]:
        verdict = "uses the shortcut less than"
    elif old - new > noise:
        verdict = "does worse without the shortcut than"
    else:
        verdict = f"is not clearly different (within ±{noise:.3f}) from"
    return (f"**{after}** {verdict} {before}: accuracy without the shortcut {old:.3f} → {new:.3f}, share of "
            f"|gradient| on the marked region {rows.at[before, share]:.3f} → {rows.at[after, share]:.3f} (the first "
            f"{n:,} test images).")
