"""Gradient-masking check: flag models whose white-box robustness is an artefact of vanishing gradients.

Defensive distillation is the textbook case: at T = 1 its softmax saturates, input gradients underflow
to exactly zero, and FGSM does nothing while a targeted or iterative attack still breaks it. The third symptom is
Athalye et al.'s (2018): a black-box attack that reads only outputs (Square) does better than every attack that
follows the gradient, so the gradient misleads them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VANISHING_SHARE = 0.2  # flag if more than this share of inputs has an all-zero input gradient
ATTACK_GAP = 0.3  # flag if white-box FGSM accuracy exceeds the strongest other attack's by this much
BLACK_BOX_GAP = 0.03  # flag if the black-box attack leaves this much less accuracy than the best gradient attack


def vanishing_gradient_share(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of inputs whose true-label cross-entropy gradient is exactly zero everywhere."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return float((grad.flatten(1).abs().amax(1) == 0).float().mean())


def masking_verdict(vanishing_share: float, fgsm_accuracy: float | None, strongest_other_accuracy: float | None,
                    black_box_accuracy: float | None = None,
                    best_gradient_accuracy: float | None = None,
                    black_box_eps: float | None = None) -> tuple[bool, str]:
    """(flagged, reason) from the three symptoms; any one is enough."""
    reasons = []
    if vanishing_share > VANISHING_SHARE:
        reasons.append(f"{vanishing_share:.0%} of inputs have an all-zero input gradient")
    if fgsm_accuracy is not None and strongest_other_accuracy is not None:
        gap = fgsm_accuracy - strongest_other_accuracy
        if gap > ATTACK_GAP:
            reasons.append(f"white-box FGSM accuracy {fgsm_accuracy:.2f} is {gap:.2f} above TGSM/PGD's "
                           f"{strongest_other_accuracy:.2f}")
    if black_box_accuracy is not None and best_gradient_accuracy is not None:
        if best_gradient_accuracy - black_box_accuracy > BLACK_BOX_GAP:
            at = f" at ε = {black_box_eps:g}" if black_box_eps is not None else ""
            reasons.append(f"black-box Square leaves {black_box_accuracy:.2f}{at}, below every gradient attack "
                           f"(best {best_gradient_accuracy:.2f})")
    return bool(reasons), "; ".join(reasons) or "no sign of gradient masking"
