"""The study's pre-registered primary analysis: a linear mixed model of the 1–7 rating with the source model
as fixed effect and crossed random intercepts for participant and item (statsmodels MixedLM, REML).

Crossed effects are fitted the way statsmodels supports them: one group holding every answer, with participant
and item as variance components. The primary test is one contrast, fixed before data: the reference model
(gradreg) against the mean of the other source models, a two-sided Wald z test.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

ANALYSIS = ("Linear mixed model (REML, statsmodels MixedLM): rating ~ source model (treatment coding, reference = "
            "{reference}) + (1 | participant) + (1 | item), crossed random intercepts. Primary test: the contrast "
            "{reference} − mean(other source models), two-sided Wald z, α = {alpha}. Robustness checks: "
            "participant-bootstrap intervals and sign-flip permutation tests.")


@dataclass
class MixedResult:
    reference: str
    contrast: float  # reference − mean of the others, in rating points
    se: float
    z: float
    p_value: float
    coefficients: pd.DataFrame  # per other model: its difference from the reference, se, p
    variances: dict[str, float]  # participant, item, residual
    intercept: float  # the reference model's mean rating
    n_participants: int
    n_items: int
    n_answers: int
    converged: bool


def fit_mixed(ratings: pd.DataFrame, reference: str) -> MixedResult:
    """Fit the primary model to rating trials (columns participant_id, item_id, source_model, rating)."""
    import statsmodels.formula.api as smf

    data = pd.DataFrame({"rating": ratings.rating.astype(float), "participant": ratings.participant_id.astype(str),
                         "item": ratings.item_id.astype(str), "source": ratings.source_model.astype(str),
                         "group": 1})
    models = sorted(data.source.unique())
    if reference not in models or len(models) < 2:
        raise ValueError(f"the mixed model needs the reference model {reference!r} and at least one other; "
                         f"the data have {models}")
    if data.participant.nunique() < 2 or data["item"].nunique() < 2:
        raise ValueError("the mixed model needs at least two participants and two items")
    formula = f"rating ~ C(source, Treatment({reference!r}))"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary fits (a variance at 0) are reported via `converged`
        fit = smf.mixedlm(formula, data, groups="group", re_formula="0",
                          vc_formula={"participant": "0 + C(participant)", "item": "0 + C(item)"}).fit(reml=True)
    names = [n for n in fit.fe_params.index if n != "Intercept"]
    others = [n.split("[T.", 1)[1].rstrip("]") for n in names]
    weights = np.full(len(names), -1.0 / len(names))
    cov = fit.cov_params().loc[names, names].to_numpy()
    contrast = float(weights @ fit.fe_params[names].to_numpy())
    se = float(np.sqrt(weights @ cov @ weights))
    z = contrast / se if se > 0 else float("nan")
    coefficients = pd.DataFrame({"source_model": others, "difference_from_reference": fit.fe_params[names].values,
                                 "se": fit.bse_fe[names].values, "p_value": fit.pvalues[names].values})
    vc = dict(zip(fit.model.exog_vc.names, np.atleast_1d(fit.vcomp), strict=True))
    return MixedResult(reference=reference, contrast=contrast, se=se, z=z, p_value=math.erfc(abs(z) / math.sqrt(2)),
                       coefficients=coefficients,
                       variances={"participant": float(vc["participant"]), "item": float(vc["item"]),
                                  "residual": float(fit.scale)},
                       intercept=float(fit.fe_params["Intercept"]), n_participants=data.participant.nunique(),
                       n_items=data["item"].nunique(), n_answers=len(data), converged=bool(fit.converged))
