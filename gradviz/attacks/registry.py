"""Every attack gradviz knows, as one entry each: what it is, its settings with their ranges, one batched function.

Evaluation, grids, study stimuli, the CLI, the report and the pages read this registry instead of comparing
attack names, so adding an attack is one entry (and its tests). An entry's function has the signature
`(model, x, labels, eps, seed, progress, **params) -> adversarial batch`, where `labels` are the true classes
for an untargeted attack and the target classes for a targeted one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from gradviz.attacks.autoattack import TORCHATTACKS_VERSION, autoattack, square
from gradviz.attacks.jsma import jsma
from gradviz.attacks.linf import Progress, fgsm, last_iterate, linf_steps, single_step_sweep, tgsm
from gradviz.attacks.linf import random_start as _uniform_start
from gradviz.nets.architecture import evaluating
from gradviz.params import Param, checked_settings, parse_settings

Run = Callable[..., torch.Tensor]
Iterates = Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class Attack:
    """One attack. `eps_bounded`: an L∞ budget ε; otherwise a pixel (L0) budget among its params and no ε.
    `multi_step`: it takes many gradient steps (it reports progress and may be run on fewer images).
    `one_gradient`: every ε of a sweep comes from one gradient (single-step attacks). `iterates`, where given,
    yields every step (logits the step came from, new image), so a grid can keep the whole path; an attack with
    iterates needs no `run`: its result is the last iterate."""

    name: str
    label: str
    targeted: bool
    eps_bounded: bool
    multi_step: bool
    params: tuple[Param, ...]
    reference: str
    run: Run | None = None
    iterates: Iterates | None = None
    one_gradient: bool = False
    budget_param: str | None = None  # a pixel-budget attack's setting that is the share of pixels it may change
    kind: str = "gradient"  # "gradient", "black-box" (reads outputs only) or "ensemble" (several attacks in turn)

    def __post_init__(self):
        if self.run is None and self.iterates is None:
            raise ValueError(f"attack {self.name}: give run or iterates")
        if not self.eps_bounded and self.budget_param not in {p.name for p in self.params}:
            raise ValueError(f"attack {self.name}: a pixel-budget attack names its budget setting")

    def settings(self, given: Mapping[str, float] | None = None) -> dict:
        """Defaults overridden by `given`, every value checked; an unknown setting is an error, not ignored."""
        return checked_settings(self.name, self.params, given)

    def check_eps(self, eps: float | None) -> float | None:
        if not self.eps_bounded:
            return None
        if eps is None or not 0 <= float(eps) <= 1:
            raise ValueError(f"{self.name} needs an ε between 0 and 1 (images lie in [0, 1]); got {eps!r}")
        return float(eps)

    def generate(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float | None = None,
                 seed: int = 0, progress: Progress | None = None, **params) -> torch.Tensor:
        """Adversarial images of the batch x; `labels` are targets for a targeted attack."""
        eps, settings = self.check_eps(eps), self.settings(params)
        with evaluating(model):  # the attacker's view: eval mode, the model's own mode restored after
            return self._generate(model, x, labels, eps, seed, progress, settings)

    def _generate(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float | None, seed: int,
                  progress: Progress | None, settings: dict) -> torch.Tensor:
        if eps == 0:
            return x.detach().clone()
        if self.run is None:
            return last_iterate(self.iterates(model, x, labels, eps, seed, progress, **settings), x)
        return self.run(model, x, labels, eps, seed, progress, **settings)

    def sweep(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_values: list[float],
              seed: int = 0, progress: Progress | None = None, **params) -> dict[float, torch.Tensor]:
        """The batch attacked at every ε; single-step attacks share one gradient across the sweep. `progress`
        hears from inside an attack that reports it (AutoAttack, Square: images done)."""
        if not self.eps_bounded:
            raise ValueError(f"{self.name} has a pixel budget, not an ε to sweep")
        eps_values = [self.check_eps(e) for e in eps_values]
        if self.one_gradient:
            self.settings(params)
            with evaluating(model):
                return single_step_sweep(model, x, labels, eps_values, targeted=self.targeted)
        return {e: self.generate(model, x, labels, e, seed, progress, **params) for e in eps_values}

    def path(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float | None = None,
             seed: int = 0, progress: Progress | None = None,
             **params) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every step of an iterative L∞ attack as (logits of the image the step started from, new image); an
        attack without steps to show yields the original's logits and its final images once."""
        eps, settings = self.check_eps(eps), self.settings(params)
        with evaluating(model):  # held while the caller reads the steps; restored when the path ends or closes
            if self.iterates is not None and eps:
                yield from self.iterates(model, x, labels, eps, seed, progress, **settings)
                return
            with torch.no_grad():
                logits = model(x)
            yield logits, self._generate(model, x, labels, eps, seed, progress, settings)

    def budget(self, eps: float | None, params: Mapping[str, float] | None = None) -> str:
        """The attack's strength in words: 'ε = 0.3', or for a pixel budget its settings 'θ = 1, γ = 0.25'."""
        if self.eps_bounded:
            return f"ε = {eps:g}"
        labels = {p.name: p.label.split(" ")[0] for p in self.params}
        return ", ".join(f"{labels[k]} = {v:g}" for k, v in self.settings(params).items())

    def describe(self, eps: float | None, params: Mapping[str, float] | None = None, seed: int = 0) -> dict:
        """The provenance of examples this attack made: name, ε (None for pixel budgets), settings, source."""
        return {"attack": self.name, "attack_label": self.label, "eps": self.check_eps(eps),
                "targeted": self.targeted, **self.settings(params), "seed": seed, "reference": self.reference}


def _fgsm(model, x, y, eps, seed, progress):
    return fgsm(model, x, y, eps)


def _tgsm(model, x, target, eps, seed, progress):
    return tgsm(model, x, target, eps)


def _itgsm(model, x, target, eps, seed, progress, steps, step_scale):
    return linf_steps(model, x, target, eps * step_scale, steps, eps, towards=True, progress=progress)


def _pgd(model, x, y, eps, seed, progress, steps, step_scale, random_start):
    start = _uniform_start(x, eps, seed) if random_start else None
    return linf_steps(model, x, y, eps * step_scale, steps, eps, start=start, progress=progress)


def _mifgsm(model, x, y, eps, seed, progress, steps, decay):
    return linf_steps(model, x, y, eps / steps, steps, eps, decay=decay, progress=progress)


def _jsma(model, x, target, eps, seed, progress, theta, gamma):
    return jsma(model, x, target, theta, gamma, progress).images


STEPS_HELP = "gradient steps; each costs one forward and one backward pass of the source model"
REGISTRY: dict[str, Attack] = {a.name: a for a in (
    Attack("fgsm", "FGSM (untargeted, one step)", targeted=False, eps_bounded=True, multi_step=False, params=(),
           run=_fgsm, one_gradient=True, reference="Goodfellow et al. 2015, arXiv:1412.6572"),
    Attack("tgsm", "TGSM (targeted, one step)", targeted=True, eps_bounded=True, multi_step=False, params=(),
           run=_tgsm, one_gradient=True, reference="Kurakin et al. 2017, arXiv:1611.01236"),
    Attack("itgsm", "Iterated TGSM (targeted, in the ε-ball)", targeted=True, eps_bounded=True, multi_step=True,
           params=(Param("steps", "Steps", 10, 1, 100, 1, "int", help=STEPS_HELP),
                   Param("step_scale", "Step size (× ε)", 0.25, 0.01, 1.0, 0.01,
                         help="each step moves every pixel by this share of ε; 1 with ε = 1 is the paper's "
                              "unprojected grids")),
           iterates=_itgsm, reference="Kurakin et al. 2017, arXiv:1611.01236 (BIM, targeted)"),
    Attack("pgd", "PGD (untargeted, random start)", targeted=False, eps_bounded=True, multi_step=True,
           params=(Param("steps", "Steps", 20, 1, 200, 1, "int", help=STEPS_HELP),
                   Param("step_scale", "Step size (× ε)", 0.125, 0.01, 1.0, 0.005),
                   Param("random_start", "Random start", 1, 0, 1, 1, "bool",
                         help="start from a uniform point of the ε-ball (seeded); off: start at the image")),
           iterates=_pgd, reference="Madry et al. 2018, arXiv:1706.06083"),
    Attack("mifgsm", "MI-FGSM (untargeted, momentum)", targeted=False, eps_bounded=True, multi_step=True,
           params=(Param("steps", "Steps", 10, 1, 100, 1, "int", help=STEPS_HELP + "; each step moves ε/steps"),
                   Param("decay", "Momentum μ", 1.0, 0.0, 2.0, 0.05,
                         help="g ← μ·g + ∇/‖∇‖₁; μ = 0 is iterated FGSM with step ε/steps")),
           iterates=_mifgsm, reference="Dong et al. 2018, arXiv:1710.06081"),
    Attack("jsma", "JSMA (targeted, pixel budget)", targeted=True, eps_bounded=False, multi_step=True,
           params=(Param("theta", "θ (change per pixel)", 1.0, kind="choice", choices=(-1.0, -0.5, 0.5, 1.0),
                         help="pixels are raised (θ > 0) or lowered (θ < 0) by θ, once each"),
                   Param("gamma", "γ (most pixels changed)", 0.25, 0.02, 0.5, 0.01,
                         help="the share of pixels the attack may change; it stops earlier when it succeeds")),
           run=_jsma, budget_param="gamma", reference="Papernot et al. 2016, arXiv:1511.07528"),
    Attack("autoattack", "AutoAttack (untargeted, standard)", targeted=False, eps_bounded=True, multi_step=True,
           params=(), run=autoattack, kind="ensemble",
           reference=f"Croce & Hein 2020, arXiv:2003.01690 (torchattacks {TORCHATTACKS_VERSION}: APGD-CE, "
                     "APGD-T, FAB-T, Square)"),
    Attack("square", "Square (untargeted, black-box)", targeted=False, eps_bounded=True, multi_step=True,
           params=(Param("queries", "Queries", 5000, 100, 20000, 100, "int",
                         help="model evaluations per image (AutoAttack's Square uses 5,000)"),),
           run=square, kind="black-box",
           reference=f"Andriushchenko et al. 2020, arXiv:1912.00049 (torchattacks {TORCHATTACKS_VERSION})"),
)}


def get_attack(name: str) -> Attack:
    """The registry entry called `name`, or a ValueError that lists the attacks there are."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(REGISTRY)}") from None


def attack_names(eps_bounded: bool | None = None, targeted: bool | None = None) -> list[str]:
    """Names of the registered attacks, optionally only those with (or without) an ε, or targeted (or not)."""
    return [a.name for a in REGISTRY.values()
            if (eps_bounded is None or a.eps_bounded == eps_bounded) and (targeted is None or a.targeted == targeted)]


def pixels_changed(x: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Per example, how many pixels the attack changed (the L0 size of the perturbation)."""
    return (adv != x).flatten(1).sum(1)


def parse_attack_params(items: list[str] | None) -> dict[str, dict]:
    """`["mifgsm.decay=0.5", "pgd.steps=40"]` (the CLI's --param) as {attack: {setting: value}}, each checked."""
    out = parse_settings(items, "--param", example="mifgsm.decay=0.5")
    for attack, given in out.items():
        out[attack] = get_attack(attack).settings(given)
    return out


def attack_title(name: str) -> str:
    """A short heading for results of attack `name` ('MI-FGSM'), also for attacks no longer registered."""
    entry = REGISTRY.get(name)
    return entry.label.split(" (")[0] if entry else name.upper()
