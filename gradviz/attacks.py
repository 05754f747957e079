"""Gradient-sign attacks on whole batches, on whatever device the model lives on.

FGSM and TGSM are single steps of ±ε·sign(∇ₓ CE); because the sign does not depend on ε, one
gradient per source model serves a whole ε-sweep (`single_step_sweep`). Iterated TGSM / BIM is a
loop of such steps; L∞ PGD with a random start comes from captum.robust.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from captum.robust import PGD
from torch import nn

from gradviz.datasets import DATA_RANGE
from gradviz.jsma import jsma

ATTACKS = ("fgsm", "tgsm", "itgsm", "pgd")  # the ε-sweep attacks of evaluate
LIVE_ATTACKS = (*ATTACKS, "jsma")  # one image at a time (Attack lab)
TARGET_MODES = ("next", "least-likely", "random")
NUM_CLASSES = 10


def logit_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example CE on logits; captum.robust's default loss assumes probabilities, ours are logits."""
    return F.cross_entropy(logits, labels, reduction="none")


def logits_and_gradient_sign(model: nn.Module, x: torch.Tensor,
                             labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of x and sign(∇ₓ CE(model(x), labels)), from one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), x)
    return logits.detach(), grad.sign()


def loss_gradient_sign(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sign(∇ₓ CE(model(x), labels)) for the whole batch in one backward pass.

    Written by hand rather than with captum.robust.FGSM because callers reuse the sign for a whole
    ε-sweep, and adversarial training needs it from a train-mode model mid-step.
    """
    return logits_and_gradient_sign(model, x, labels)[1]


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
        return (y + 1) % NUM_CLASSES
    if mode == "least-likely":
        with torch.no_grad():
            return model(x).argmin(1)
    if mode == "random":
        g = torch.Generator().manual_seed(seed)
        offset = torch.randint(1, NUM_CLASSES, y.shape, generator=g).to(y.device)
        return (y + offset) % NUM_CLASSES
    raise ValueError(f"unknown target mode {mode!r}; use a class number or one of {', '.join(TARGET_MODES)}")


def single_step_sweep(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_values: Iterable[float],
                      targeted: bool = False) -> dict[float, torch.Tensor]:
    """FGSM (or TGSM with target `labels`) at every ε from one gradient computation."""
    direction = loss_gradient_sign(model, x, labels)
    if targeted:
        direction = -direction
    return {float(e): step_towards(x, direction, e) for e in eps_values}


def itgsm_steps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, step: float, steps: int,
                eps: float | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterated TGSM one step at a time: yields the logits the step's gradient came from and the new iterate,
    kept within the L∞ ε-ball around x when `eps` is given. The attack and the grids' iteration paths share it."""
    adv = x.detach()
    for _ in range(steps):
        logits, sign = logits_and_gradient_sign(model, adv, target)
        adv = step_towards(adv, -sign, step)
        if eps is not None:
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(*DATA_RANGE)
        yield logits, adv


def iterative_tgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float | None = None,
                   step: float = 0.1, steps: int = 10, project: bool = False) -> torch.Tensor:
    """Iterated TGSM / BIM: repeated targeted steps; with `project`, kept within the L∞ ε-ball around x.

    Without projection (the paper's image grids: step 0.1, 10–25 steps) ε is unused.
    """
    if project and eps is None:
        raise ValueError("projection needs eps")
    adv = x.detach()
    for _, iterate in itgsm_steps(model, x, target, step, steps, eps if project else None):
        adv = iterate
    return adv


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 20,
        step_size: float | None = None, seed: int = 0) -> torch.Tensor:
    """Untargeted L∞ PGD with a random start (captum.robust.PGD), for honest white-box numbers."""
    if eps == 0:
        return x.detach().clone()
    step_size = step_size if step_size is not None else 2.5 * eps / steps
    attack = PGD(model, loss_func=logit_cross_entropy, lower_bound=DATA_RANGE[0], upper_bound=DATA_RANGE[1])
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return attack.perturb(x, radius=eps, step_size=step_size, step_num=steps, target=y,
                              random_start=True).detach()


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, eps_values: Iterable[float],
               target_mode: str | int = "next", seed: int = 0, steps: int = 10) -> dict[float, torch.Tensor]:
    """Adversarial examples of one attack at every ε, for a batch; single-step attacks share one gradient."""
    eps_values = [float(e) for e in eps_values]
    if attack == "fgsm":
        return single_step_sweep(model, x, y, eps_values)
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    if attack == "pgd":
        return {e: pgd(model, x, y, e, seed=seed) for e in eps_values}
    target = choose_targets(model, x, y, target_mode, seed)
    if attack == "tgsm":
        return single_step_sweep(model, x, target, eps_values, targeted=True)
    return {e: iterative_tgsm(model, x, target, eps=e, step=max(e / 4, 1e-3) if e else 0.0, steps=steps,
                              project=True) for e in eps_values}


def attack_image(model: nn.Module, x: torch.Tensor, label: int, attack: str, eps: float,
                 target: int | None = None, steps: int = 10, seed: int = 0,
                 gamma: float = 0.25) -> tuple[torch.Tensor, dict]:
    """One image [1, 1, 28, 28] attacked live; returns it with the provenance a download needs.

    JSMA ignores ε: it raises pixels by θ = 1 (ε's role) until the target is predicted or γ of them changed.
    """
    y = torch.tensor([label], device=x.device)
    t = torch.tensor([(label + 1) % NUM_CLASSES if target is None else target], device=x.device)
    if attack == "fgsm":
        adv = fgsm(model, x, y, eps)
    elif attack == "tgsm":
        adv = tgsm(model, x, t, eps)
    elif attack == "itgsm":
        adv = iterative_tgsm(model, x, t, eps=eps, step=max(eps / 4, 1e-3), steps=steps, project=True)
    elif attack == "pgd":
        adv = pgd(model, x, y, eps, seed=seed)
    elif attack == "jsma":
        result = jsma(model, x, t, theta=1.0, gamma=gamma)
        adv, extra = result.images, {"theta": 1.0, "gamma": gamma, "pixels_changed": int(result.pixels_changed[0])}
    else:
        raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(LIVE_ATTACKS)}")
    targeted = attack in ("tgsm", "itgsm", "jsma")
    record = {"attack": attack, "eps": None if attack == "jsma" else eps, "true_class": label,
              "target_class": int(t) if targeted else None, "steps": steps if attack in ("itgsm", "pgd") else 1,
              "seed": seed, "linf": float((adv - x).abs().max()), "l2": float((adv - x).norm())}
    return adv, {**record, **(extra if attack == "jsma" else {})}
