"""How alike two batches of saliency maps are: rank correlation and SSIM, one score per image pair.

The randomisation checks (Adebayo et al. 2018) compare a model's maps with the maps of a damaged model or of
another class; both measures are the ones Quantus uses, so our scores can be checked against it.
"""
from __future__ import annotations

import numpy as np
import torch

SIMILARITIES = ("spearman", "ssim")


def average_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks 1…D within each row of [N, D], ties sharing their mean rank (scipy's `rankdata(method="average")`),
    in numpy: importing scipy.stats costs a page's first visit more than a second."""
    n, d = rows.shape
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, 1)
    starts = np.ones((n, d), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = np.cumsum(starts, axis=1) - 1 + (np.arange(n) * d)[:, None]  # tie group, numbered across rows
    position = np.broadcast_to(np.arange(1, d + 1, dtype=np.float64), (n, d))
    mean_rank = np.bincount(group.ravel(), position.ravel(), n * d) / np.maximum(np.bincount(group.ravel(),
                                                                                             minlength=n * d), 1)
    ranks = np.empty((n, d))
    np.put_along_axis(ranks, order, mean_rank[group], 1)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of each pair of maps [N, H, W] (ties share their mean rank, as in scipy);
    0 where either map is constant (no ranking to compare)."""
    ra = average_ranks(a.flatten(1).double().cpu().numpy())
    rb = average_ranks(b.flatten(1).double().cpu().numpy())
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
