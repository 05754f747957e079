"""Power analysis by simulation: participants drawn from the primary mixed model, analysed by the real
analysis (gradviz.study.mixed_model.fit_mixed), in the study's own Latin-square design.

A simulated participant j sees every item once, item i in condition (i + j) mod K, exactly as
gradviz.study.design allocates real participants. Ratings are drawn on the latent scale and then rounded and
clipped to the 1–7 buttons, so the power includes what the coarse scale costs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from gradviz.evaluation.runs.stats import wilson_interval
from gradviz.study.mixed_model import fit_mixed

MIN_PILOT_PARTICIPANTS = 6


@dataclass
class Design:
    items: list[str]
    conditions: list[str]  # "source model|attack|ε", as in a stimulus set
    reference: str

    @classmethod
    def from_stimuli(cls, rows: list[dict], reference: str | None = None) -> Design:
        from gradviz.study.design import index_set

        items, conditions, _, _ = index_set(rows)
        models = sorted({c.split("|", 1)[0] for c in conditions})
        reference = reference or next((m for m in models if m.endswith("gradreg")), models[0] if models else "")
        return cls(items, conditions, reference)

    @classmethod
    def synthetic(cls, n_items: int, models: list[str], reference: str) -> Design:
        return cls([f"item-{i}" for i in range(n_items)], [f"{m}|itgsm|0.3" for m in models], reference)

    def lists(self) -> int:
        return len(self.conditions)


@dataclass
class Assumptions:
    """What the simulation assumes; `source` says whether it came from pilot data or stated priors."""
    effect: float = 0.5  # reference − others, rating points
    intercept: float = 3.5  # the reference model's mean rating
    sd_participant: float = 0.8
    sd_item: float = 0.5
    sd_residual: float = 1.3
    source: str = "stated priors (no pilot data)"


@dataclass
class PowerResult:
    n_required: int | None  # None: not reached within max_n
    target: float
    alpha: float
    sims: int
    curve: list[dict] = field(default_factory=list)  # n, power, ci_low, ci_high
    assumptions: dict = field(default_factory=dict)


def assumptions_from_pilot(ratings: pd.DataFrame, reference: str, effect: float) -> Assumptions | None:
    """Variance components and the mean from pilot answers (the effect stays the researcher's choice)."""
    if ratings.participant_id.nunique() < MIN_PILOT_PARTICIPANTS:
        return None
    fit = fit_mixed(ratings, reference)
    v = fit.variances
    return Assumptions(effect=effect, intercept=fit.intercept, sd_participant=float(np.sqrt(v["participant"])),
                       sd_item=float(np.sqrt(v["item"])), sd_residual=float(np.sqrt(v["residual"])),
                       source=f"pilot data ({fit.n_participants} participants, {fit.n_answers} ratings)")


def simulate(design: Design, n_participants: int, a: Assumptions, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated data set, in the columns the real analysis reads."""
    k, n_items = design.lists(), len(design.items)
    people = np.repeat(np.arange(n_participants), n_items)
    items = np.tile(np.arange(n_items), n_participants)
    conditions = (items + people) % k
    models = np.array([c.split("|", 1)[0] for c in design.conditions])[conditions]
    latent = (a.intercept - a.effect * (models != design.reference)
              + rng.normal(0, a.sd_participant, n_participants)[people]
              + rng.normal(0, a.sd_item, n_items)[items] + rng.normal(0, a.sd_residual, len(people)))
    return pd.DataFrame({"participant_id": people.astype(str), "item_id": np.array(design.items)[items],
                         "source_model": models, "rating": np.clip(np.round(latent), 1, 7)})


def rejection_rate(design: Design, n_participants: int, a: Assumptions, sims: int, alpha: float = 0.05,
                   seed: int = 0, progress: Callable[[int], None] | None = None) -> float:
    """Share of simulated studies whose primary test rejects at α (in the predicted direction or not)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for s in range(sims):
        hits += fit_mixed(simulate(design, n_participants, a, rng), design.reference).p_value < alpha
        if progress:
            progress(s + 1)
    return hits / sims


def required_participants(design: Design, a: Assumptions, target: float = 0.8, alpha: float = 0.05,
                          sims: int = 200, max_n: int = 400, seed: int = 0,
                          progress: Callable[[str], None] | None = None) -> PowerResult:
    """The smallest N (a whole number of Latin-square rounds, so every list is used equally) whose simulated
    power reaches the target: double from one round until it is reached, then bisect."""
    k = design.lists()
    result = PowerResult(None, target, alpha, sims, assumptions=asdict(a))
    cache: dict[int, float] = {}

    def power(n: int) -> float:
        if n not in cache:
            report = (lambda s: progress(f"N = {n}: simulation {s} of {sims}")) if progress else None
            cache[n] = rejection_rate(design, n, a, sims, alpha, seed + n, report)
            low, high = wilson_interval(round(cache[n] * sims), sims)
            result.curve.append({"n": n, "power": cache[n], "ci_low": low, "ci_high": high})
        return cache[n]

    rounds, last_short = 1, 0
    while rounds * k <= max_n and power(rounds * k) < target:
        last_short, rounds = rounds, rounds * 2
    if rounds * k > max_n:
        result.curve.sort(key=lambda r: r["n"])
        return result
    low, high = last_short, rounds  # power(low·k) < target ≤ power(high·k)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if power(middle * k) < target else (low, middle)
    result.n_required = high * k
    result.curve.sort(key=lambda r: r["n"])
    return result


def run_power_analysis(engine, effect: float = 0.5, sims: int = 200, target: float = 0.8, alpha: float = 0.05,
                       max_n: int = 400, seed: int = 0, progress: Callable[[str], None] | None = None) -> PowerResult:
    """The power analysis of the active stimulus set: variance components from the answers so far when there
    are enough (pilot), else the stated priors of `Assumptions`."""
    from gradviz.study.analysis import included, responses_frame
    from gradviz.study.sessions import active_set
    from gradviz.study.stimulus_sets import load_set

    design = Design.from_stimuli(load_set(engine, active_set(engine)))
    frame = responses_frame(engine)
    pilot = assumptions_from_pilot(included(frame), design.reference, effect) if not frame.empty else None
    return required_participants(design, pilot or Assumptions(effect=effect), target, alpha, sims, max_n, seed,
                                 progress)
