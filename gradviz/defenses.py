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


def _regularized(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: LossSettings,
                 extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of [x; extra] in one pass and λ's term, mean‖∇ₓ ℓ‖² over the clean examples x only,
    for Grad Reg (y) or (1/K)."""
    x = x.detach().requires_grad_(True)
    n = len(x)

    def joined(z: torch.Tensor) -> torch.Tensor:
        return z if extra is None else torch.cat([z, extra])

    replay = _replay(model, x.device)
    logits = model(joined(x))
    penalized = uniform_losses if s.defense == "gradreg-uniform" else cross_entropy_losses
    penalty = input_gradient_penalty(x, penalized(logits[:n], y), lambda z: penalized(replay(joined(z))[:n], y),
                                     method=s.penalty, h=s.fd_step)
    return logits, penalty


def adversarial_examples(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM examples made as a test-time attacker makes them: the model in evaluation mode (running batch-norm
    statistics, no dropout), labels from its own predictions (no label leaking).

    Made in training mode instead, an all-adversarial batch is normalised by its own statistics; the model then
    learned to resist only that (measured: 0.97 FGSM accuracy at ε = 0.3 in that mode, 0.17 in evaluation mode).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            predicted = model(x).argmax(1)
        return fgsm(model, x.detach(), predicted, eps)
    finally:
        model.train(was_training)


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: LossSettings,
               teacher: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one training batch under defense `s.defense`.

    Adversarial defenses train on ½ clean + ½ FGSM examples in *one* forward pass of the joined batch, so batch
    norm sees the same mixture in training that its running statistics hold at test time.
    """
    n = len(x)
    extra = adversarial_examples(model, x, s.eps) if s.defense in ADVERSARIAL else None
    labels = y if extra is None else torch.cat([y, y])
    penalty = torch.zeros((), device=x.device)
    if s.defense in REGULARIZED:
        logits, penalty = _regularized(model, x, y, s, extra)
        ce = F.cross_entropy(logits, labels)
    elif teacher is not None:  # distillation student: match the teacher's soft labels at temperature T
        with torch.no_grad():
            soft = F.softmax(teacher(x) / s.temperature, dim=1)
        logits = model(x)
        ce = -(soft * F.log_softmax(logits / s.temperature, dim=1)).sum(1).mean()
    else:
        logits = model(x if extra is None else torch.cat([x, extra]))
        ce = F.cross_entropy(logits / s.temperature, labels)
    total = ce + s.lam * penalty
    accuracy = (logits[:n].argmax(1) == y).float().mean()
    stats = {"loss": total, "ce": ce, "penalty": penalty, "acc": accuracy}
    return total, {k: float(v.detach()) for k, v in stats.items()}
