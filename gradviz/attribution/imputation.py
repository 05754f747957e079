"""ROAD's noisy linear imputation (Rong et al., ICML 2022), batched: removed pixels are filled in from their
neighbours, so a removal test measures what the map found rather than the model's reaction to black holes.

Each removed pixel equals the weighted mean of its eight neighbours (1/6 across, 1/12 diagonal; weights of
neighbours outside the image are dropped), known pixels fixed. That is a sparse symmetric positive-definite
system per image; Quantus solves it with scipy per image, here conjugate gradients solve every image at once
with one 3×3 convolution per iteration.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_KERNEL = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def _neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """Σ over the 8 neighbours of weight × value, per channel (zero outside the image)."""
    c = v.shape[1]
    kernel = _KERNEL.to(v).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    return F.conv2d(v, kernel, padding=1, groups=c)


@torch.no_grad()
def linear_imputation(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.01,
                      generator: torch.Generator | None = None, tolerance: float = 1e-7,
                      max_iterations: int = 2000) -> torch.Tensor:
    """`x` [N, C, H, W] with the `removed` pixels (bool, same shape) replaced by the solution of the neighbour
    equations plus Gaussian noise of standard deviation `noise`."""
    x64 = x.double()
    unknown = removed.double()
    weight = _neighbour_sum(torch.ones_like(x64))

    def apply(v: torch.Tensor) -> torch.Tensor:
        return unknown * (weight * v - _neighbour_sum(unknown * v))

    b = unknown * _neighbour_sum((1 - unknown) * x64)
    v = torch.zeros_like(x64)
    r = b.clone()
    p = r.clone()
    dims = tuple(range(1, x.dim()))
    rs = (r * r).sum(dims, keepdim=True)
    scale = (b * b).sum(dims, keepdim=True).clamp_min(1e-30)
    for _ in range(max_iterations):
        if bool((rs <= tolerance**2 * scale).all()):
            break
        ap = apply(p)
        curvature = (p * ap).sum(dims, keepdim=True)
        alpha = torch.where(curvature > 0, rs / curvature.clamp_min(1e-300), torch.zeros_like(rs))
        v = v + alpha * p
        r = r - alpha * ap
        rs_next = (r * r).sum(dims, keepdim=True)
        p = r + torch.where(rs > 0, rs_next / rs.clamp_min(1e-300), torch.zeros_like(rs)) * p
        rs = rs_next
    filled = torch.where(removed, v, x64)
    if noise > 0:
        jitter = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64) * noise
        filled = filled + unknown * jitter
    return filled.to(x.dtype)
