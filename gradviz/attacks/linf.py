"""Gradient attacks on whole batches, on whatever device the model lives on.

FGSM and TGSM are single steps of ±ε·sign(∇ₓ CE); because the sign does not depend on ε, one gradient per
source model serves a whole ε-sweep (`single_step_sweep`). The iterative L∞ attacks (iterated TGSM / BIM,
PGD, MI-FGSM) are one loop, `linf_steps`, differing only in direction, start and momentum. Which attacks
exist, with their settings, is gradviz.attacks.registry's business.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.data.datasets import DATA_RANGE
from gradviz.nets.architecture import class_count

TARGET_MODES = ("next", "least-likely", "random")
Progress = Callable[[int, int], None]  # (done, total)


def logits_and_gradient(model: nn.Module, x: torch.Tensor,
                        labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of x and ∇ₓ CE(model(x), labels) summed over the batch (each example's own gradient)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), x)
    return logits.detach(), grad


def loss_gradient_sign(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sign(∇ₓ CE(model(x), labels)) for the whole batch in one backward pass.

    Written by hand rather than with captum.robust.FGSM because callers reuse the sign for a whole
    ε-sweep, and adversarial training needs it from a train-mode model mid-step.
    """
    return logits_and_gradient(model, x, labels)[1].sign()


def step_towards(x: torch.Tensor, direction: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + eps * direction).clamp(*DATA_RANGE).detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Untargeted FGSM: x' = clip(x + ε·sign(∇ₓ CE(f(x), y)))."""
    return step_towards(x, loss_gradient_sign(model, x, y), eps)


def tgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Targeted FGSM: x' = clip(x − ε·sign(∇ₓ CE(f(x), t))), a step towards class t."""
    return step_towards(x, -loss_gradient_sign(model, x, target), eps)


def choose_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str | int = "next",
                   seed: int = 0) -> torch.Tensor:
    """Target classes: (y+1) mod K as in the paper, the least-likely class, a random other class, or a fixed one."""
    if isinstance(mode, int) or str(mode).isdigit():
        return torch.full_like(y, int(mode))
    if mode == "next":
        return (y + 1) % class_count(model, x)
    if mode == "least-likely":
        with torch.no_grad():
            return model(x).argmin(1)
    if mode == "random":
        g = torch.Generator().manual_seed(seed)
        k = class_count(model, x)
        offset = torch.randint(1, k, y.shape, generator=g).to(y.device)
        return (y + offset) % k
    raise ValueError(f"unknown target mode {mode!r}; use a class number or one of {', '.join(TARGET_MODES)}")


def single_step_sweep(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_values: Iterable[float],
                      targeted: bool = False) -> dict[float, torch.Tensor]:
    """FGSM (or TGSM with target `labels`) at every ε from one gradient computation."""
    direction = loss_gradient_sign(model, x, labels)
    if targeted:
        direction = -direction
    return {float(e): step_towards(x, direction, e) for e in eps_values}


def project(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """adv moved back into the L∞ ε-ball around x and the data range."""
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(*DATA_RANGE)


def random_start(x: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """A uniform point of the ε-ball around x (within the data range), the same for the same seed on any device."""
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(x.shape, generator=g) * 2 - 1).to(x.device, x.dtype)
    return (x + eps * noise).clamp(*DATA_RANGE)


def linf_steps(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, step: float, steps: int,
               eps: float | None = None, towards: bool = False, decay: float | None = None,
               start: torch.Tensor | None = None,
               progress: Progress | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Signed-gradient steps one at a time, yielding the logits each step's gradient came from and the new
    iterate. Up the CE of `labels` (untargeted) or, with `towards`, down it (targeted); with `decay` μ the
    step follows the momentum g ← μ·g + ∇/‖∇‖₁ (MI-FGSM); with `eps`, each iterate is kept in the ε-ball."""
    adv = (x if start is None else start).detach()
    momentum = torch.zeros_like(x)
    for i in range(steps):
        logits, grad = logits_and_gradient(model, adv, labels)
        if decay is not None:
            l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
            momentum = decay * momentum + grad / l1
            grad = momentum
        adv = step_towards(adv, -grad.sign() if towards else grad.sign(), step)
        if eps is not None:
            adv = project(adv, x, eps)
        if progress is not None:
            progress(i + 1, steps)
        yield logits, adv


def last_iterate(iterates: Iterator[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """The final image of an iteration (x itself when it takes no steps)."""
    last = deque(iterates, maxlen=1)
    return last[0][1] if last else x.detach()
