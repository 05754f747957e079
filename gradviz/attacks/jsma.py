"""The Jacobian-based saliency map attack (Papernot et al. 2016), batched, as the paper's figures used it.

Each iteration raises the pair of pixels whose joint effect most increases the target logit while
decreasing the sum of the other logits (the logits' Jacobian, as in cleverhans), by θ. A pixel changes at
most once; an example stops when the model predicts the target, when γ of its pixels have changed, or when
no pair helps. Written here rather than taken from torchattacks, whose JSMA attacks one image at a time
with one backward pass per class.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gradviz.data.datasets import DATA_RANGE

PAIR_CHUNK = 32  # examples scored at once: the pair table is chunk × pixels² floats (32 × 784² ≈ 79 MB)


@dataclass
class JSMAResult:
    """Adversarial images with what the attack did to each."""

    images: torch.Tensor  # [N, C, H, W]
    success: torch.Tensor  # [N] bool: the model predicts the target
    pixels_changed: torch.Tensor  # [N] int
    iterations: torch.Tensor  # [N] int: pixel pairs applied


def _logit_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """Logits, ∇ₓ of the target logit and ∇ₓ of the sum of the other logits, flattened per example."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    target_logit = logits.gather(1, target.view(-1, 1)).sum()
    (grad_target,) = torch.autograd.grad(target_logit, x, retain_graph=True)
    (grad_all,) = torch.autograd.grad(logits.sum(), x)
    return logits.detach(), grad_target.flatten(1), (grad_all - grad_target).flatten(1)


def _best_pairs(alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor):
    """Per example, the pixel pair (p, q), p ≠ q, both in `domain`, maximising (α_p+α_q)·|β_p+β_q| subject to
    α_p+α_q > 0 and β_p+β_q < 0; `found` is False where no pair qualifies."""
    pixels = alpha.shape[1]
    ps, qs, found = [], [], []
    for a, b, d in zip(alpha.split(PAIR_CHUNK), beta.split(PAIR_CHUNK), domain.split(PAIR_CHUNK)):
        pair_a = a[:, :, None] + a[:, None, :]
        pair_b = b[:, :, None] + b[:, None, :]
        allowed = (d[:, :, None] & d[:, None, :]) & (pair_a > 0) & (pair_b < 0)
        allowed &= ~torch.eye(pixels, dtype=torch.bool, device=a.device)
        score = torch.where(allowed, pair_a * -pair_b, torch.full_like(pair_a, -1.0))
        best = score.flatten(1).argmax(1)
        found.append(allowed.flatten(1).any(1))
        ps.append(torch.div(best, pixels, rounding_mode="floor"))
        qs.append(best % pixels)
    return torch.cat(ps), torch.cat(qs), torch.cat(found)


def jsma(model: nn.Module, x: torch.Tensor, target: torch.Tensor, theta: float = 1.0, gamma: float = 0.25,
         progress: Callable[[int, int], None] | None = None) -> JSMAResult:
    """Targeted JSMA on a batch (θ > 0 raises pixels, θ < 0 lowers them); the paper: θ = 1, γ = 0.25.
    `progress(step, most)` hears after every Jacobian step, out of the most the pixel budget allows (γ·pixels/2);
    the attack usually ends sooner, when every example has reached its target."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma is a fraction of the pixels, in (0, 1]; got {gamma}")
    if theta == 0:
        raise ValueError("theta must not be 0")
    adv = x.detach().clone()
    flat = adv.view(len(adv), -1)
    pixels = flat.shape[1]
    budget = int(gamma * pixels)  # pixels an example may change
    domain = flat < DATA_RANGE[1] if theta > 0 else flat > DATA_RANGE[0]
    changed = torch.zeros(len(adv), dtype=torch.long, device=adv.device)
    iterations = torch.zeros_like(changed)
    active = torch.ones(len(adv), dtype=torch.bool, device=adv.device)
    while True:
        idx = active.nonzero().flatten()
        if len(idx) == 0:
            break
        logits, alpha, beta = _logit_gradients(model, adv[idx], target[idx])
        reached = logits.argmax(1) == target[idx]
        p, q, found = _best_pairs(alpha, beta, domain[idx])
        go = ~reached & found & (changed[idx] + 2 <= budget)
        active[idx[~go]] = False
        rows, p, q = idx[go], p[go], q[go]
        for pixel in (p, q):
            flat[rows, pixel] = (flat[rows, pixel] + theta).clamp(*DATA_RANGE)
            domain[rows, pixel] = False
        changed[rows] += 2
        iterations[rows] += 1
        if progress is not None:
            progress(int(iterations.max()), budget // 2)
    with torch.no_grad():
        success = model(adv).argmax(1) == target
    return JSMAResult(adv, success, changed, iterations)
