"""Training losses of the paper's defenses, one batch at a time.

Each loss returns (total loss, statistics) so the training loop, the CLI progress bar and the
browser's live curve all show the same numbers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.attacks import fgsm
from gradviz.penalties import cross_entropy_losses, input_gradient_penalty, uniform_losses

DEFENSES = ("normal", "gradreg", "gradreg-uniform", "advtrain", "distilled", "gradreg+advtrain")
REGULARIZED = {"gradreg", "gradreg-uniform", "gradreg+advtrain"}
ADVERSARIAL = {"advtrain", "gradreg+advtrain"}


@dataclass(frozen=True)
class LossSettings:
    """The knobs of a defense's loss."""

    defense: str = "normal"
    lam: float = 0.0
    eps: float = 0.3
    temperature: float = 1.0
    penalty: str = "exact"
    fd_step: float = 1e-2


def _replay(model: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward pass that replays the dropout mask of the *next* ordinary `model(x)` call.

    The finite-difference penalty compares two forward passes; different dropout masks would swamp the
    difference it measures. The RNG state is captured now and restored only inside the replay, so the
    ordinary pass still advances the generator and every training step draws a fresh mask.
    """
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def forward(x: torch.Tensor) -> torch.Tensor:
        devices = [device] if cuda_state is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)
            return model(x)

    return forward


def _regularized(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: LossSettings):
    """Cross-entropy plus λ·mean‖∇ₓ ℓ‖² for Grad Reg (y) or (1/K)."""
    x = x.detach().requires_grad_(True)
    replay = _replay(model, x.device)
    logits = model(x)
    ce = cross_entropy_losses(logits, y)
    penalized = uniform_losses if s.defense == "gradreg-uniform" else cross_entropy_losses
    penalty = input_gradient_penalty(x, penalized(logits, y), lambda z: penalized(replay(z), y),
                                     method=s.penalty, h=s.fd_step)
    return logits, ce.mean(), penalty


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: LossSettings,
               teacher: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one training batch under defense `s.defense`."""
    penalty = torch.zeros((), device=x.device)
    if s.defense in REGULARIZED:
        logits, ce, penalty = _regularized(model, x, y, s)
    elif teacher is not None:  # distillation student: match the teacher's soft labels at temperature T
        with torch.no_grad():
            soft = F.softmax(teacher(x) / s.temperature, dim=1)
        logits = model(x)
        ce = -(soft * F.log_softmax(logits / s.temperature, dim=1)).sum(1).mean()
    else:
        logits = model(x)
        ce = F.cross_entropy(logits / s.temperature, y)
    if s.defense in ADVERSARIAL:  # ½ clean + ½ FGSM from the model's own predictions, made on the fly
        x_adv = fgsm(model, x.detach(), logits.argmax(1).detach(), s.eps)
        ce = 0.5 * ce + 0.5 * F.cross_entropy(model(x_adv), y)
    total = ce + s.lam * penalty
    accuracy = (logits.argmax(1) == y).float().mean()
    stats = {"loss": total, "ce": ce, "penalty": penalty, "acc": accuracy}
    return total, {k: float(v.detach()) for k, v in stats.items()}
