"""The paper's defenses as specs, and their training losses, one batch at a time.

Each defense is one `Defense` entry: the settings it takes, its phases, and what its loss adds (an input-gradient
penalty, FGSM examples, a teacher). The CLI's flags, the Train page's controls, model cards, checkpoints and recipe
checks are all made from these entries, so a new defense is one entry here (and a test).
Each loss returns (total loss, statistics) so the training loop, the CLI progress bar and the browser's live curve
all show the same numbers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradviz.attacks.linf import fgsm
from gradviz.nets.architecture import evaluating
from gradviz.training.cam_penalty import cam_penalty
from gradviz.training.fast_penalty import FastPenalty
from gradviz.training.penalties import (
    PENALTY_METHODS,
    cross_entropy_losses,
    input_gradient_penalty,
    log_probability_sums,
    uniform_losses,
)

PerExampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> losses [N]
KEEP = object()  # a card records an unused setting as it is


@dataclass(frozen=True)
class Setting:
    """One knob a defense takes: a TrainConfig field, with what the CLI, the Train page and cards need."""

    name: str
    label: str
    help: str
    suggested: float | str  # where the Train page starts
    low: float = 0.0
    high: float = 1e6
    choices: tuple[str, ...] = ()
    when_unused: object = KEEP  # what a card records for a defense that ignores it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS = {s.name: s for s in (
    Setting("lam", "λ (gradient penalty)", "gradient-penalty weight λ (gradviz units)", 10.0),
    Setting("penalty", "Penalty", "exact double backpropagation or its finite-difference approximation",
            "exact", choices=PENALTY_METHODS),
    Setting("lam_warmup", "λ warm-up (fraction of the run)",
            "fraction of the run over which λ rises linearly from 0 (avoids collapse at large λ)", 0.2, 0.0, 1.0),
    Setting("eps", "ε (adversarial training)", "FGSM ε of adversarial training", 0.3, 0.0, 1.0, when_unused=None),
    Setting("temperature", "T (distillation)", "distillation temperature", 50.0, 1.0, 1000.0, when_unused=1.0),
)}
_PENALTY = ("lam", "penalty", "lam_warmup")


@dataclass(frozen=True)
class Defense:
    """One defense: its settings (names in SETTINGS), its training phases and what its loss adds."""

    name: str
    label: str
    settings: tuple[str, ...] = ()
    penalised: PerExampleLoss | None = None  # the per-example loss whose input gradient is penalised
    adversarial: bool = False  # trains on ½ clean + ½ FGSM examples
    phases: tuple[str, ...] = ("main",)  # ("teacher", "student"): a teacher trains first, then the model
    masked: bool = False  # needs the annotation masks (1 = where the model must not look)
    cam_penalised: bool = False  # penalises the true class's Grad-CAM map inside the mask (RRR-G)
    counterexamples: bool = False  # adds copies of the annotated images with the masked region randomised
    reference: str = ""  # where it comes from
    suggested_lam: float | None = None  # where a form's λ starts for this defense (None: the λ setting's own)

    @property
    def distils(self) -> bool:
        return "teacher" in self.phases

    @property
    def takes_lam(self) -> bool:
        return "lam" in self.settings


_ROSS_2018 = "Ross & Doshi-Velez 2018, AAAI, arXiv:1711.09404"
DEFENSE_SPECS = {d.name: d for d in (
    Defense("normal", "Normal", reference="plain cross-entropy"),
    Defense("gradreg", "Grad Reg (y)", _PENALTY, penalised=cross_entropy_losses, reference=_ROSS_2018),
    Defense("gradreg-uniform", "Grad Reg (1/K)", _PENALTY, penalised=uniform_losses, reference=_ROSS_2018),
    Defense("advtrain", "Adversarial training", ("eps",), adversarial=True,
            reference="Goodfellow, Shlens & Szegedy 2015, ICLR, arXiv:1412.6572"),
    Defense("distilled", "Defensive distillation", ("temperature",), phases=("teacher", "student"),
            reference="Papernot et al. 2016, IEEE S&P, arXiv:1511.04508"),
    Defense("gradreg+advtrain", "Grad Reg (y) + adversarial training", (*_PENALTY, "eps"),
            penalised=cross_entropy_losses, adversarial=True, reference=_ROSS_2018),
    # RRR's λ: the reference code's 1000 on 0–255 pixels, 1000 / 255² on ours. RRR-G's (on peak-scaled maps,
    # gradviz.training.cam_penalty): the best of 0.1…10⁴ on held-out Decoy MNIST digits (recipes/decoy-mnist.toml).
    Defense("rrr", "RRR (masked penalty)", _PENALTY, penalised=log_probability_sums, masked=True,
            reference="Ross, Hughes & Doshi-Velez 2017 (right for the right reasons), IJCAI, arXiv:1703.03717",
            suggested_lam=0.0154),
    Defense("rrr-g", "RRR-G (masked Grad-CAM penalty)", ("lam", "lam_warmup"), masked=True, cam_penalised=True,
            reference="Schramowski et al. 2020, Nature Machine Intelligence, arXiv:2001.05371", suggested_lam=100.0),
    Defense("counterexamples", "Counterexamples (masked region randomised)", masked=True, counterexamples=True,
            reference="Teso & Kersting 2019 (explanatory interactive learning), AIES, arXiv:1805.08578"),
)}
DEFENSES = tuple(DEFENSE_SPECS)
REGULARIZED = {n for n, d in DEFENSE_SPECS.items() if d.takes_lam}  # a penalty weighted by λ
MASKED = {n for n, d in DEFENSE_SPECS.items() if d.masked}
ADVERSARIAL = {n for n, d in DEFENSE_SPECS.items() if d.adversarial}


def defense_spec(name: str) -> Defense:
    """The spec of `name`; unknown names are refused with the list of known ones."""
    if name not in DEFENSE_SPECS:
        raise ValueError(f"unknown defense {name!r}; choose one of {', '.join(DEFENSES)}")
    return DEFENSE_SPECS[name]


def unused_settings(defense: str) -> set[str]:
    """The defense settings `defense` ignores (they cannot change its weights)."""
    return set(SETTINGS) - set(defense_spec(defense).settings)


@dataclass(frozen=True)
class LossSettings:
    """The knobs of a defense's loss."""

    defense: str = "normal"
    lam: float = 0.0
    eps: float = 0.3
    temperature: float = 1.0
    penalty: str = "exact"
    fd_step: float = 1e-2


def _replay(model: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
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


@dataclass
class _PlainWindow:
    """The step without the fast path: the model's own forward, and nothing to mark around the penalty."""

    forward: Callable[[torch.Tensor], torch.Tensor]

    def penalty_pass(self):
        return nullcontext()


@contextmanager
def _step_window(model: nn.Module, fast: FastPenalty | None, second_order: bool,
                 x: torch.Tensor) -> Iterator[object]:
    if fast is None:
        yield _PlainWindow(model)
        return
    with fast.window(second_order, own_input=x) as window:
        yield window


def _regularized(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: LossSettings,
                 extra: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                 fast: FastPenalty | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of [x; extra] in one pass and λ's term, mean‖A ⊙ ∇ₓ ℓ‖² over the clean examples x only
    (A = `mask` for RRR, everywhere for Grad Reg (y) or (1/K)); through `fast` (gradviz.training.fast_penalty)
    when the caller opted in and the model is one it knows."""
    x = x.detach().requires_grad_(True)
    n = len(x)

    def joined(z: torch.Tensor) -> torch.Tensor:
        return z if extra is None else torch.cat([z, extra])

    with _step_window(model, fast, s.penalty == "exact", x) as window:
        replay = _replay(window.forward, x.device)
        logits = window.forward(joined(x))
        penalized = DEFENSE_SPECS[s.defense].penalised
        with window.penalty_pass():
            penalty = input_gradient_penalty(x, penalized(logits[:n], y),
                                             lambda z: penalized(replay(joined(z))[:n], y),
                                             method=s.penalty, h=s.fd_step, mask=mask)
    return logits, penalty


def adversarial_examples(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM examples made as a test-time attacker makes them: the model in evaluation mode (running batch-norm
    statistics, no dropout), labels from its own predictions (no label leaking).

    Made in training mode instead, an all-adversarial batch is normalised by its own statistics; the model then
    learned to resist only that (measured: 0.97 FGSM accuracy at ε = 0.3 in that mode, 0.17 in evaluation mode).
    """
    with evaluating(model):
        with torch.no_grad():
            predicted = model(x).argmax(1)
        return fgsm(model, x.detach(), predicted, eps)


def counterexamples(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the annotated images (a mask with any pixel set) whose marked pixels are uniform noise, with their
    labels: what the marked region shows then says nothing about the class (Teso & Kersting 2019). Fresh noise
    each step, from the generator the training loop checkpoints."""
    annotated = mask.flatten(1).any(1)
    copies, marked = x[annotated], mask[annotated].expand_as(x[annotated])
    return torch.where(marked, torch.rand_like(copies), copies), y[annotated]


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: LossSettings,
               teacher: nn.Module | None = None, mask: torch.Tensor | None = None,
               fast: FastPenalty | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one training batch under defense `s.defense`; `mask` ([N, 1, H, W], 1 = where the model must not
    look) is the annotation a masked defense needs; `fast` the opt-in CPU fast path of the penalty.

    Adversarial defenses train on ½ clean + ½ FGSM examples in *one* forward pass of the joined batch, so batch
    norm sees the same mixture in training that its running statistics hold at test time; counterexamples join
    the batch the same way.
    """
    n, spec = len(x), DEFENSE_SPECS[s.defense]
    if spec.masked and mask is None:
        raise ValueError(f"defense {s.defense!r} needs the dataset's annotation masks")
    extra, extra_labels = None, y[:0]
    if spec.adversarial:
        extra, extra_labels = adversarial_examples(model, x, s.eps), y
    elif spec.counterexamples:
        extra, extra_labels = counterexamples(x, y, mask.bool())
    labels = torch.cat([y, extra_labels])
    penalty = torch.zeros((), device=x.device)
    if spec.penalised is not None:
        logits, penalty = _regularized(model, x, y, s, extra, mask.to(x.dtype) if spec.masked else None, fast)
        ce = F.cross_entropy(logits, labels)
    elif spec.cam_penalised:
        logits, penalty = cam_penalty(model, x, y, mask.to(x.dtype))
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
