"""Input-gradient penalties: exact double backpropagation and its finite-difference approximation.

Normalisation used throughout gradviz: penalty = mean over examples of ‖∇ₓ ℓᵢ‖², where ℓᵢ is one
example's loss. The reference TensorFlow code instead adds λ_ref·½·‖∇ₓ mean(ℓ)‖², which equals
λ_ref/(2N)·mean‖∇ₓ ℓᵢ‖² for batch size N, so λ = λ_ref / (2N) (λ_ref / 512 at N = 256).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor], torch.Tensor]  # images -> per-example losses [N]

REFERENCE_BATCH = 256
PENALTY_METHODS = ("exact", "finite-difference")
NORMALISATION = "mean over the batch of the squared L2 norm of each example's input gradient"


def from_reference_lambda(lam_ref: float, batch_size: int = REFERENCE_BATCH) -> float:
    """Convert a λ in the reference code's units to gradviz's per-example-mean units."""
    return lam_ref / (2 * batch_size)


def to_reference_lambda(lam: float, batch_size: int = REFERENCE_BATCH) -> float:
    """Inverse of from_reference_lambda, for comparing with the paper's chosen values."""
    return lam * 2 * batch_size


def cross_entropy_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy against the true label ("Grad Reg (y)")."""
    return F.cross_entropy(logits, y, reduction="none")


def uniform_losses(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example cross-entropy against the uniform distribution, (1/K)·Σₖ −log pₖ ("Grad Reg (1/K)")."""
    return -F.log_softmax(logits, dim=1).mean(dim=1)


def log_probability_sums(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example Σₖ log pₖ: the quantity whose masked input gradient "right for the right reasons" (Ross,
    Hughes & Doshi-Velez 2017) penalises, so every class's evidence, not only the label's, leaves the mask."""
    return F.log_softmax(logits, dim=1).sum(dim=1)


def _masked(grad: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return grad if mask is None else grad * mask


def exact_penalty(x: torch.Tensor, losses: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean ‖A ⊙ ∇ₓ ℓᵢ‖² by double backpropagation (A = `mask`, all ones when None); `losses` must come from
    `x` with requires_grad."""
    (grad,) = torch.autograd.grad(losses.sum(), x, create_graph=True)
    return _masked(grad, mask).pow(2).flatten(1).sum(1).mean()


def finite_difference_penalty(x: torch.Tensor, losses: torch.Tensor, loss_fn: LossFn,
                              h: float = 1e-2, mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean ‖A ⊙ ∇ₓ ℓᵢ‖² approximated as ((ℓ(x + h·d) − ℓ(x)) / h)², d = A∇ₓℓ / ‖A∇ₓℓ‖ held constant.

    Finlay & Oberman (2019): the directional derivative along the normalised gradient equals the
    gradient norm, so a forward difference estimates it with one extra forward pass and no
    second-order graph. With a 0/1 mask A the same holds for the masked gradient: ∇ℓ·A∇ℓ/‖A∇ℓ‖ = ‖A∇ℓ‖.
    """
    (grad,) = torch.autograd.grad(losses.sum(), x, retain_graph=True)
    grad = _masked(grad, mask)
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    direction = (grad / norms.view(-1, 1, 1, 1)).detach()
    shifted = loss_fn(x.detach() + h * direction)
    return ((shifted - losses) / h).pow(2).mean()


def input_gradient_penalty(x: torch.Tensor, losses: torch.Tensor, loss_fn: LossFn, method: str = "exact",
                           h: float = 1e-2, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch on the penalty implementation named by the CLI's --penalty; `mask` restricts it (RRR)."""
    if method == "exact":
        return exact_penalty(x, losses, mask)
    if method == "finite-difference":
        return finite_difference_penalty(x, losses, loss_fn, h=h, mask=mask)
    raise ValueError(f"unknown penalty {method!r}; use {' or '.join(PENALTY_METHODS)}")
