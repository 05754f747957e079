"""Gradient-masking check: flag models whose white-box robustness is an artefact of vanishing gradients.

Defensive distillation is the textbook case: at T = 1 its softmax saturates, input gradients underflow
to exactly zero, and FGSM does nothing while a targeted or iterative attack still breaks it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VANISHING_SHARE = 0.2  # flag if more than this share of inputs has an all-zero input gradient
ATTACK_GAP = 0.3  # flag if white-box FGSM accuracy exceeds the strongest other attack's by this much


def vanishing_gradient_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of inputs whose true-label cross-entropy gradient is exactly zero everywhere."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return float((grad.flatten(1).abs().amax(1) == 0).float().mean())


def masking_verdict(vanishing_share: float, fgsm_accuracy: float | None,
                    strongest_other_accuracy: float | None) -> tuple[bool, str]:
    """(flagged, reason) from the two symptoms; either alone is enough."""
    reasons = []
    if vanishing_share > VANISHING_SHARE:
        reasons.append(f"{vanishing_share:.0%} of inputs have an all-zero input gradient")
    if fgsm_accuracy is not None and strongest_other_accuracy is not None:
        gap = fgsm_accuracy - strongest_other_accuracy
        if gap > ATTACK_GAP:
            reasons.append(f"white-box FGSM accuracy {fgsm_accuracy:.2f} is {gap:.2f} above TGSM/PGD's "
                           f"{strongest_other_accuracy:.2f}")
    return bool(reasons), "; ".join(reasons) or "no sign of gradient masking"
