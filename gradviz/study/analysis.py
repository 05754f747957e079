"""Analysis of the legitimacy ratings: exclusions, per-model means with bootstrap intervals, paired tests,
inter-rater agreement, and ratings against perturbation size.

Statistics chosen for a Latin-square design where every participant sees every source model on different
items: intervals come from a participant-level (cluster) bootstrap, and the comparison of gradreg with
each other model is a sign-flip permutation test on per-participant mean differences.
"""
from __future__ import annotations

import json

import krippendorff
import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from gradviz.study.db import participants, responses, stimuli
from gradviz.study.mixed_model import MixedResult, fit_mixed

MAX_FAILED_CHECKS = 1  # exclusion rule: a participant failing two or more attention checks is excluded


def responses_frame(engine: Engine) -> pd.DataFrame:
    """One row per answer with its stimulus's provenance (long format, for export and analysis)."""
    columns = [stimuli.c.item_id, stimuli.c.condition, stimuli.c.source_model, stimuli.c.source_sha256,
               stimuli.c.attack, stimuli.c.eps, stimuli.c.true_class, stimuli.c.target_class, stimuli.c.l2,
               stimuli.c.ssim, stimuli.c.provenance]
    query = (select(responses, participants.c.study_id, participants.c.session_id, participants.c.list_index,
                    participants.c.completed_at, *columns)
             .join(stimuli, stimuli.c.stimulus_id == responses.c.stimulus_id)
             .join(participants, participants.c.participant_id == responses.c.participant_id)
             .order_by(responses.c.participant_id, responses.c.trial_index))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    if frame.empty:
        return frame
    frame["other_source_model"] = frame.other_stimulus_id.map(_source_of(engine))
    return frame


def _source_of(engine: Engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(stimuli.c.stimulus_id, stimuli.c.source_model)).all())


def attention_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per participant: attention checks seen and failed (wrong class), and whether the rule excludes them."""
    checks = frame[frame.kind == "attention"]
    summary = checks.assign(failed=checks.chosen_class != checks.true_class).groupby("participant_id").agg(
        checks=("failed", "size"), failed=("failed", "sum"))
    summary = summary.reindex(frame.participant_id.unique(), fill_value=0)
    summary["excluded"] = summary.failed > MAX_FAILED_CHECKS
    return summary.reset_index().rename(columns={"index": "participant_id"})


def included(frame: pd.DataFrame) -> pd.DataFrame:
    """Rating trials of participants the exclusion rule keeps."""
    keep = attention_summary(frame).query("not excluded").participant_id
    ratings = frame[(frame.kind == "rating") & frame.participant_id.isin(keep)]
    return ratings.assign(target_answer=(ratings.chosen_class == ratings.target_class).astype(float))


def cluster_bootstrap(ratings: pd.DataFrame, value: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean of `value` per source model with a 95% interval from resampling participants."""
    rng = np.random.default_rng(seed)
    people = ratings.participant_id.unique()
    per = ratings.groupby(["participant_id", "source_model"])[value].agg(["sum", "count"]).unstack(fill_value=0)
    sums, counts = per["sum"].reindex(people).to_numpy(), per["count"].reindex(people).to_numpy()
    draws = rng.integers(0, len(people), size=(n_boot, len(people)))
    boot = sums[draws].sum(1) / np.maximum(counts[draws].sum(1), 1)
    models = per["sum"].columns
    return pd.DataFrame({"source_model": models, "mean": sums.sum(0) / np.maximum(counts.sum(0), 1),
                         "ci_low": np.percentile(boot, 2.5, axis=0), "ci_high": np.percentile(boot, 97.5, axis=0),
                         "n": counts.sum(0)})


def paired_permutation(ratings: pd.DataFrame, model_a: str, model_b: str, value: str = "rating",
                       n_perm: int = 10000, seed: int = 0) -> dict:
    """Sign-flip permutation test of mean(a) − mean(b) over participants who saw both (two-sided)."""
    per = ratings[ratings.source_model.isin([model_a, model_b])].pivot_table(
        index="participant_id", columns="source_model", values=value, aggfunc="mean").dropna()
    if model_a not in per or model_b not in per or len(per) < 2:
        return {"a": model_a, "b": model_b, "participants": len(per), "difference": np.nan, "p_value": np.nan}
    diff = (per[model_a] - per[model_b]).to_numpy()
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(diff)))
    null = np.abs((signs * diff).mean(1))
    p = (1 + (null >= abs(diff.mean()) - 1e-12).sum()) / (n_perm + 1)
    return {"a": model_a, "b": model_b, "participants": len(per), "difference": float(diff.mean()), "p_value": float(p)}


def agreement(ratings: pd.DataFrame) -> float:
    """Krippendorff's α (ordinal) of the 1–7 ratings, raters × stimuli with gaps for unseen stimuli."""
    table = ratings.pivot_table(index="participant_id", columns="stimulus_id", values="rating", aggfunc="first")
    if table.shape[0] < 2 or table.notna().sum(0).max() < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=table.to_numpy(dtype=float), level_of_measurement="ordinal",
                                    value_domain=list(range(1, 8))))


def size_correlations(ratings: pd.DataFrame) -> dict:
    """Spearman correlation of the rating with the perturbation's L2 norm and with SSIM to the clean image."""
    from scipy.stats import spearmanr  # here: importing scipy.stats at the top costs the Researcher page ~1 s

    out = {}
    for column in ("l2", "ssim"):
        rho, p = spearmanr(ratings[column], ratings.rating) if len(ratings) > 2 else (np.nan, np.nan)
        out[column] = {"rho": float(rho), "p_value": float(p)}
    return out


def analyse(frame: pd.DataFrame, reference: str | None = None) -> dict:
    """Everything the researcher page shows, as plain tables and numbers."""
    ratings = included(frame)
    models = sorted(ratings.source_model.dropna().unique())
    reference = reference or next((m for m in models if m.endswith("gradreg")), models[0] if models else None)
    tests = [paired_permutation(ratings, reference, m) for m in models if m != reference]
    target_tests = [paired_permutation(ratings, reference, m, "target_answer") for m in models if m != reference]
    return {
        "mixed": primary_analysis(ratings, reference),
        "attention": attention_summary(frame),
        "rating": cluster_bootstrap(ratings, "rating") if len(ratings) else pd.DataFrame(),
        "target_share": cluster_bootstrap(ratings, "target_answer") if len(ratings) else pd.DataFrame(),
        "tests": pd.DataFrame(tests + target_tests).assign(
            measure=["rating"] * len(tests) + ["target answer"] * len(target_tests)) if tests else pd.DataFrame(),
        "alpha": agreement(ratings), "sizes": size_correlations(ratings), "reference": reference,
        "ratings": ratings, "pairs": pair_wins(frame),
    }


def primary_analysis(ratings: pd.DataFrame, reference: str | None) -> MixedResult | str:
    """The pre-registered mixed model, or why it cannot be fitted yet."""
    try:
        return fit_mixed(ratings, reference)
    except (ValueError, np.linalg.LinAlgError) as error:
        return str(error)


def pair_wins(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairwise trials: how often each source model's stimulus was judged more like the target."""
    pairs = frame[frame.kind == "pair"]
    if pairs.empty:
        return pd.DataFrame(columns=["source_model", "wins", "shown"])
    winner = np.where(pairs.pair_choice == 0, pairs.source_model, pairs.other_source_model)
    shown = pd.concat([pairs.source_model, pairs.other_source_model]).value_counts()
    wins = pd.Series(winner).value_counts()
    return pd.DataFrame({"wins": wins, "shown": shown}).fillna(0).rename_axis("source_model").reset_index()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula (OWASP: CSV injection)


def neutralise_formula(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, made inert with a leading apostrophe; others unchanged."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw answers for CSV/Parquet: provenance JSON kept as text, images left out, no cell a formula."""
    out = frame.copy()
    if "provenance" in out:
        out["provenance"] = out.provenance.map(lambda p: p if isinstance(p, str) else json.dumps(p))
    for column in out.select_dtypes(include=["object", "string"]).columns:
        out[column] = out[column].map(neutralise_formula)
    return out
