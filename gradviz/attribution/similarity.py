"""How alike two batches of saliency maps are: rank correlation and SSIM, one score per image pair.

The randomisation checks (Adebayo et al. 2018) compare a model's maps with the maps of a damaged model or of
another class; both measures are the ones Quantus uses, so our scores can be checked against it.
"""
from __future__ import annotations

import numpy as np
import torch

SIMILARITIES = ("spearman", "ssim")


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of each pair of maps [N, H, W] (ties share their mean rank, as in scipy);
    0 where either map is constant (no ranking to compare)."""
    from scipy.stats import rankdata  # here, not at the top: every CLI command reads the metric registry

    ra = rankdata(a.flatten(1).double().cpu().numpy(), axis=1)
    rb = rankdata(b.flatten(1).double().cpu().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(1) / denominator, 0.0)


def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Structural similarity of each pair of maps [N, H, W] (scikit-image, 7×7 window), on the pair's joint
    value range; 1 for two identical constant maps."""
    from skimage.metrics import structural_similarity

    a_np, b_np = a.double().cpu().numpy(), b.double().cpu().numpy()
    out = np.empty(len(a_np))
    for i, (p, q) in enumerate(zip(a_np, b_np)):
        span = float(max(p.max(), q.max()) - min(p.min(), q.min()))
        out[i] = 1.0 if span == 0 else structural_similarity(p, q, data_range=span)
    return out


def similarity(a: torch.Tensor, b: torch.Tensor, kind: str) -> np.ndarray:
    """`spearman` or `ssim` of each pair of maps."""
    if kind == "spearman":
        return spearman(a, b)
    if kind == "ssim":
        return ssim(a, b)
    raise ValueError(f"unknown similarity {kind!r}; use {' or '.join(SIMILARITIES)}")
