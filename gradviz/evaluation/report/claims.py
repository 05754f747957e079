"""The paper's claims as typed facts: what an evaluation measured for each of them, and whether each held.

Nothing here writes text for a reader beyond a verdict's short detail: gradviz.evaluation.report.reproduction renders
these facts as docs/REPRODUCTION.md. Every threshold a verdict or target uses is named in `THRESHOLDS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from gradviz.attacks.registry import REGISTRY
from gradviz.evaluation.runs.matrix import EvalResult

ORDER = ["normal", "distilled", "advtrain", "gradreg-uniform", "gradreg", "gradreg+advtrain"]
TRANSFER_SOURCES = ORDER[:5]  # the paper's summary averages over its five models' examples


@dataclass(frozen=True)
class Thresholds:
    """Every number a verdict or target compares with, in one place."""

    margin: float = 0.02  # about the 95% Wilson half-width at n = 1000 for accuracies near 0.1; smaller gaps are noise
    chance: float = 0.12  # at or below this both models are at chance on 10 classes, so neither "wins"
    clean_floor: float = 0.990  # MNIST clean accuracy of an unregularized zoo model
    clean_floor_regularized: float = 0.988
    headline_min: float = 0.50  # Grad Reg (y)'s FGSM-from-normal accuracy at ε = 0.4 (paper 0.621)
    headline_gap: float = 0.35  # … above the normal model's own white-box accuracy there (paper 0.070)
    eps5_gap: float = 0.02  # Grad Reg (y) above adversarial training at ε = 0.5
    advtrain_whitebox_min: float = 0.85  # white-box FGSM at ε = 0.3 (paper 0.965)
    masking_tgsm_max: float = 0.5  # a masked model still falls to TGSM at ε = 0.2
    fooled_max: float = 0.5  # claim 2: examples made on Grad Reg (y) leave every other model below this
    fashion_gain: float = 0.15  # Fashion-MNIST: gradreg above normal on transferred FGSM at ε = 0.1
    fashion_clean_loss: float = 0.015  # … losing at most this much clean accuracy
    high_eps: tuple[float, ...] = (0.3, 0.4, 0.5)
    low_eps: tuple[float, ...] = (0.1, 0.2)
    above_advtrain_eps: tuple[float, ...] = (0.4, 0.5)
    default_advtrain_eps: float = 0.3  # the paper's, for cards that do not record it


THRESHOLDS = Thresholds()


@dataclass
class Facts:
    """What one evaluation measured that the claims speak of."""

    names: dict[str, str]  # defense -> model name (one zoo model per defense and dataset)
    rows: pd.DataFrame
    transfer: dict[str, dict[float, float]] = field(default_factory=dict)  # mean FGSM transfer, per defense and ε
    masked: dict[str, bool] = field(default_factory=dict)  # model -> flagged by the masking check

    @property
    def defenses(self) -> list[str]:
        return [d for d in ORDER if d in self.names]

    @property
    def eps(self) -> list[float]:
        return sorted(e for e in self.rows.eps.unique() if e > 0)

    def masked_models(self) -> set[str]:
        return {m for m, flagged in self.masked.items() if flagged}


@dataclass(frozen=True)
class Verdict:
    """One claim: held, partly held or did not hold, and the numbers behind it."""

    claim: str
    verdict: str
    detail: str


@dataclass(frozen=True)
class Target:
    """One measurable target: its measured value in words, and whether it was met (None: not measured)."""

    label: str
    measured: str
    met: bool | None


def by_defense(result: EvalResult) -> dict[str, str]:
    """defense -> model name (the zoo has one model per defense and dataset)."""
    return {info["defense"]: name for name, info in result.provenance["models"].items()}


def accuracy_row(rows: pd.DataFrame, source: str, target: str, attack: str, eps: float) -> pd.Series | None:
    hit = rows[(rows.source == source) & (rows.target == target) & rows["attack"].eq(attack)
               & ((rows.eps - eps).abs() < 1e-9)]
    return None if hit.empty else hit.iloc[0]


def mean_transfer(rows: pd.DataFrame, names: dict[str, str], target_defense: str, attack: str, eps: float) -> float:
    """Mean accuracy of one model on examples from the other non-distilled sources (the paper's summary)."""
    target = names[target_defense]
    sources = [n for d, n in names.items() if d not in ("distilled", target_defense) and d in TRANSFER_SOURCES]
    values = [accuracy_row(rows, s, target, attack, eps) for s in sources]
    values = [v.accuracy for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def facts_of(result: EvalResult) -> Facts:
    """The facts of one evaluation: its models by defense, mean FGSM transfer, masking flags."""
    facts = Facts(by_defense(result), result.rows)
    if "fgsm" in set(result.rows.attack):
        facts.transfer = {d: {e: mean_transfer(facts.rows, facts.names, d, "fgsm", e) for e in facts.eps}
                          for d in facts.defenses if d != "distilled"}
    if not result.masking.empty:
        facts.masked = {m.model: bool(m.flagged) for m in result.masking.itertuples()}
    return facts


def whitebox(facts: Facts, defense: str, attack: str, eps: float) -> float | None:
    name = facts.names.get(defense)
    r = accuracy_row(facts.rows, name, name, attack, eps) if name else None
    return None if r is None else float(r.accuracy)


def from_normal(facts: Facts, defense: str, eps: float) -> float | None:
    if not {"normal", defense} <= facts.names.keys():
        return None
    r = accuracy_row(facts.rows, facts.names["normal"], facts.names[defense], "fgsm", eps)
    return None if r is None else float(r.accuracy)


def compare(a: dict[float, float], b: dict[float, float], eps: tuple[float, ...],
            t: Thresholds = THRESHOLDS) -> tuple[str, str]:
    """Verdict that a beats b at every ε by more than the noise margin, and the ε where it did."""
    eps = tuple(e for e in eps if e in a and e in b)
    chance = [e for e in eps if a[e] <= t.chance and b[e] <= t.chance]
    won = [e for e in eps if a[e] > b[e] + t.margin and e not in chance]
    verdict = "held" if eps and len(won) == len(eps) else "partly held" if won else "did not hold"
    detail = (f"won at ε = {', '.join(f'{e:g}' for e in won)}" if won else "won at no ε") + (
        f"; both at chance at ε = {', '.join(f'{e:g}' for e in chance)}" if chance else "")
    return verdict, detail


def series(values: dict[float, float], eps: tuple[float, ...]) -> str:
    return "/".join(f"{values.get(e, float('nan')):.3f}" for e in eps)


def advtrain_eps(result: EvalResult, name: str, t: Thresholds = THRESHOLDS) -> float:
    """The ε the adversarially trained model was trained at (the paper's, when unrecorded)."""
    return float(result.provenance["models"].get(name, {}).get("eps") or t.default_advtrain_eps)


def verdicts(facts: Facts, result: EvalResult, t: Thresholds = THRESHOLDS) -> list[Verdict]:
    """The paper's claims that an evaluation's numbers can decide."""
    names, tr, out = facts.names, facts.transfer, []
    if tr.get("gradreg") and tr.get("normal"):
        verdict, detail = compare(tr["gradreg"], tr["normal"], t.high_eps, t)
        out.append(Verdict("Claim 1 (transfer robustness), gradreg vs normal", verdict,
                           f"{detail}). Mean FGSM transfer accuracy at ε = 0.3/0.4/0.5: gradreg "
                           f"{series(tr['gradreg'], t.high_eps)}, normal {series(tr['normal'], t.high_eps)}; at the "
                           f"smaller ε = 0.1/0.2: gradreg {series(tr['gradreg'], t.low_eps)}, normal "
                           f"{series(tr['normal'], t.low_eps)}."))
    if tr.get("gradreg") and tr.get("advtrain"):
        eps = t.above_advtrain_eps
        verdict, detail = compare(tr["gradreg"], tr["advtrain"], eps, t)
        out.append(Verdict("Gradreg beats adversarial training on transferred examples above ε = 0.3", verdict,
                           f"{detail}; gradreg {series(tr['gradreg'], eps)}, advtrain {series(tr['advtrain'], eps)})."))
    if "advtrain" in names:
        eps = advtrain_eps(result, names["advtrain"], t)
        wb = {d: whitebox(facts, d, "fgsm", eps) for d in names if d != "distilled"}
        wb = {d: a for d, a in wb.items() if a is not None}
        best = max(wb, key=wb.get, default=None)
        if "advtrain" in wb:  # absent when the run did not evaluate FGSM at the model's training ε
            out.append(Verdict(f"Adversarial training wins white-box FGSM at its training ε ({eps:g})",
                               "held" if best in ("advtrain", "gradreg+advtrain") else "did not hold",
                               f"best: {names[best]}, {wb[best]:.3f}; advtrain {wb['advtrain']:.3f})."))
    if "distilled" in names:
        masked = facts.masked.get(names["distilled"])
        out.append(Verdict("Distillation's FGSM robustness is gradient masking", "held" if masked else "did not hold",
                           f"masking check {'flags' if masked else 'does not flag'} {names['distilled']})."))
    if "gradreg" in names and "fgsm" in set(facts.rows.attack):
        fooled = {d: accuracy_row(facts.rows, names["gradreg"], n, "fgsm", 0.3) for d, n in names.items()
                  if d != "gradreg"}
        fooled = {d: r.accuracy for d, r in fooled.items() if r is not None}
        worst = max(fooled.values(), default=float("nan"))
        out.append(Verdict("Claim 2 (examples made on gradreg fool every other model), FGSM at ε = 0.3",
                           "held" if worst < t.fooled_max else "did not hold",
                           f"every other model below {t.fooled_max} accuracy; "
                           + ", ".join(f"{names[d]} {a:.3f}" for d, a in fooled.items()) + ")."))
    return out


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def mnist_targets(facts: Facts, t: Thresholds = THRESHOLDS) -> list[Target]:
    """The measurable targets this reproduction set itself for MNIST (issue 9), each with its measured value."""
    out, attack = [], facts.rows.attack.iloc[0]
    for d in facts.defenses:
        floor = t.clean_floor_regularized if d in ("gradreg", "gradreg-uniform") else t.clean_floor
        clean = whitebox(facts, d, attack, 0.0)
        out.append(Target(f"{facts.names[d]} clean accuracy ≥ {floor:.1%}", fmt(clean),
                          None if clean is None else clean >= floor))
    g4, n4 = from_normal(facts, "gradreg", 0.4), whitebox(facts, "normal", "fgsm", 0.4)
    out.append(Target(f"FGSM from normal, ε = 0.4: gradreg ≥ {t.headline_min:.2f} and ≥ normal's white-box + "
                      f"{t.headline_gap:.2f} (paper 0.621 vs 0.070)", f"{fmt(g4)} vs {fmt(n4)}",
                      (g4 >= t.headline_min and g4 >= n4 + t.headline_gap) if None not in (g4, n4) else None))
    g5, a5 = from_normal(facts, "gradreg", 0.5), from_normal(facts, "advtrain", 0.5)
    out.append(Target(f"FGSM from normal, ε = 0.5: gradreg > advtrain + {t.eps5_gap:.2f} (paper 0.395 vs 0.176)",
                      f"{fmt(g5)} vs {fmt(a5)}", (g5 > a5 + t.eps5_gap) if None not in (g5, a5) else None))
    adv, adv_pgd = whitebox(facts, "advtrain", "fgsm", 0.3), whitebox(facts, "advtrain", "pgd", 0.3)
    out.append(Target(f"advtrain white-box FGSM at ε = 0.3 ≥ {t.advtrain_whitebox_min:.2f} (paper 0.965); PGD "
                      "beside it", f"{fmt(adv)} (PGD {fmt(adv_pgd)})",
                      None if adv is None else adv >= t.advtrain_whitebox_min))
    tg, flagged = whitebox(facts, "distilled", "tgsm", 0.2), facts.masked.get(facts.names.get("distilled"))
    out.append(Target(f"distilled: TGSM at ε = 0.2 below {t.masking_tgsm_max:g} and flagged as gradient masking",
                      f"{fmt(tg)}, {'flagged' if flagged else 'not flagged'}",
                      None if tg is None else tg < t.masking_tgsm_max and bool(flagged)))
    return out


def fashion_targets(facts: Facts, t: Thresholds = THRESHOLDS) -> list[Target]:
    """Fashion-MNIST's target: gradreg beats normal on transferred FGSM at ε = 0.1, at little cost in accuracy."""
    g, n = from_normal(facts, "gradreg", 0.1), whitebox(facts, "normal", "fgsm", 0.1)
    cg, cn = whitebox(facts, "gradreg", "fgsm", 0.0), whitebox(facts, "normal", "fgsm", 0.0)
    known = None not in (g, n, cg, cn)
    return [Target(f"FGSM from normal, ε = 0.1: gradreg ≥ normal + {t.fashion_gain:.2f}", f"{fmt(g)} vs {fmt(n)}",
                   (g >= n + t.fashion_gain) if known else None),
            Target(f"gradreg loses at most {t.fashion_clean_loss * 100:.1f} points of clean accuracy",
                   f"{fmt(cg)} vs {fmt(cn)}", (cn - cg <= t.fashion_clean_loss) if known else None)]


def transfer_attacks(result: EvalResult) -> list[str]:
    """The untargeted ε-attacks of a result other than FGSM: the stronger transfer attacks."""
    return [a for a in result.rows.attack.unique()
            if a in REGISTRY and REGISTRY[a].eps_bounded and not REGISTRY[a].targeted and not REGISTRY[a].one_gradient]


def transfer_verdicts(title: str, means: dict, fgsm_means: dict, names: dict[str, str],
                      t: Thresholds = THRESHOLDS) -> list[Verdict]:
    """Does Grad Reg (y)'s transfer advantage over normal and adversarial training survive a stronger attack?"""
    out = []
    for rival, eps in (("normal", t.high_eps), ("advtrain", t.above_advtrain_eps)):
        if "gradreg" not in means or rival not in means:
            continue
        verdict, detail = compare(means["gradreg"], means[rival], eps, t)
        _, fgsm_detail = compare(fgsm_means["gradreg"], fgsm_means[rival], eps, t)
        out.append(Verdict(f"Under {title}, gradreg beats {rival} on transferred examples at ε = "
                           f"{'/'.join(f'{e:g}' for e in eps)}", verdict,
                           f"{detail}; gradreg {series(means['gradreg'], eps)} vs {names[rival]} "
                           f"{series(means[rival], eps)}; under FGSM {series(fgsm_means['gradreg'], eps)} vs "
                           f"{series(fgsm_means[rival], eps)}, {fgsm_detail})."))
    return out
