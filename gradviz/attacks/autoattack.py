"""AutoAttack (Croce & Hein 2020) and its gradient-free member Square (Andriushchenko et al. 2020), run through
torchattacks' implementations, pinned to one version so a number means the same attack every time.

AutoAttack is the standard a robustness claim is checked against: APGD-CE, targeted APGD, targeted FAB and
Square in turn, each on the images the previous ones left standing. Square needs no gradient at all, so a model
that resists the gradient attacks but falls to Square is hiding its gradients rather than being robust
(gradviz.evaluation.runs.masking flags it). torchattacks is installed with --no-deps (scripts/install.sh): its
declared torchvision dependency would replace the pinned CPU torch with a CUDA build, and no code path uses it.
"""
from __future__ import annotations

import torch
from torch import nn

from gradviz.attacks.linf import Progress, project
from gradviz.nets.architecture import class_count

TORCHATTACKS_VERSION = "3.5.1"
CHUNK = 250  # images per call: progress is reported between chunks


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise RuntimeError(f"AutoAttack and Square need torchattacks {TORCHATTACKS_VERSION}: "
                           f"pip install --no-deps torchattacks=={TORCHATTACKS_VERSION}") from None
    if torchattacks.__version__ != TORCHATTACKS_VERSION:
        raise RuntimeError(f"torchattacks {torchattacks.__version__} is installed; gradviz's numbers are with "
                           f"{TORCHATTACKS_VERSION} (pip install --no-deps torchattacks=={TORCHATTACKS_VERSION})")
    return torchattacks


def _chunked(make, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
             progress: Progress | None) -> torch.Tensor:
    """Run a torchattacks attack chunk by chunk, projected exactly onto the ε-ball (theirs can overshoot ε by a
    float rounding), reporting finished images."""
    attack = make()
    out = []
    for start in range(0, len(x), CHUNK):
        adv = attack(x[start:start + CHUNK], y[start:start + CHUNK]).detach()
        out.append(project(adv, x[start:start + CHUNK], eps))
        if progress is not None:
            progress(min(start + CHUNK, len(x)), len(x))
    return torch.cat(out)


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int,
               progress: Progress | None) -> torch.Tensor:
    """Standard L∞ AutoAttack: an image counts as robust only if every one of its four attacks fails."""
    ta = _torchattacks()
    return _chunked(lambda: ta.AutoAttack(model, norm="Linf", eps=eps, version="standard",
                                          n_classes=class_count(model, x), seed=seed), model, x, y, eps, progress)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int, progress: Progress | None,
           queries: int) -> torch.Tensor:
    """Square: random square-shaped changes at the corners of the ε-ball, kept when they lower the margin; it
    reads only the model's outputs."""
    ta = _torchattacks()
    return _chunked(lambda: ta.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=seed),
                    model, x, y, eps, progress)
