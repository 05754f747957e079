"""The study library: counterbalancing, resume, uniqueness, load, crash safety and the statistics."""
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from study_helpers import MODELS, engine_for_backend, install_set, synthetic_rows

from gradviz.study import sessions
from gradviz.study.analysis import agreement, analyse, cluster_bootstrap, paired_permutation, responses_frame
from gradviz.study.db import make_engine, responses
from gradviz.study.design import latin_assignment, make_trials

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'study.sqlite'}")
    install_set(engine, synthetic_rows())
    return engine


def test_latin_square_balances_items_over_conditions():
    items, conditions = [f"i{k}" for k in range(12)], [f"c{k}" for k in range(4)]
    seen = Counter(pair for j in range(4) for pair in latin_assignment(items, conditions, j))
    assert len(seen) == 48 and set(seen.values()) == {1}  # every item in every condition exactly once
    for j in range(4):
        per_condition = Counter(c for _, c in latin_assignment(items, conditions, j))
        assert set(per_condition.values()) == {3}


def test_trial_lists_are_reproducible_and_hide_checks_from_first_place():
    rows = synthetic_rows()
    a = make_trials(rows, 1, "p1")
    assert a == make_trials(rows, 1, "p1")
    assert a != make_trials(rows, 1, "p2")  # order differs between participants
    kinds = Counter(t["kind"] for t in a)
    assert kinds == {"rating": 12, "pair": 6, "attention": 3}
    assert a[0]["kind"] != "attention"
    pairs = [t for t in a if t["kind"] == "pair"]
    assert all(t["stimulus_id"].split("-")[1] == t["other_stimulus_id"].split("-")[1] for t in pairs)  # same item


def test_slots_rotate_lists_and_registration_is_idempotent(engine):
    people = [sessions.register(engine, f"p{k}") for k in range(8)]
    assert [p.list_index for p in people] == [0, 1, 2, 3, 0, 1, 2, 3]
    again = sessions.register(engine, "p3")
    assert again.list_index == 3 and again.trials == people[3].trials


def test_resume_starts_at_the_first_unanswered_trial(engine):
    p = sessions.register(engine, "resumer")
    for t in p.trials[:5]:
        _answer(engine, p, t)
    later = sessions.find(engine, "resumer")  # a refresh, a second tab, tomorrow: a fresh lookup
    assert sessions.next_trial(engine, later)["trial_index"] == 5
    assert not sessions.complete(engine, later)


def test_one_answer_per_trial_and_completion(engine):
    p = sessions.register(engine, "once")
    first = next(t for t in p.trials if t["kind"] == "rating")
    assert _answer(engine, p, first, rating=2)
    assert not _answer(engine, p, first, rating=7)  # a double click stores nothing new
    with engine.connect() as conn:
        assert conn.execute(select(responses.c.rating).where(responses.c.participant_id == "once")).scalar() == 2
    for t in p.trials:
        _answer(engine, p, t)
    assert sessions.complete(engine, p) and sessions.complete(engine, p)
    assert sessions.progress(engine) == {"started": 1, "completed": 1, "answers": len(p.trials), "withdrawn": 0}


def test_bad_answers_and_ids_are_refused(engine):
    p = sessions.register(engine, "strict")
    rating_trial = next(t for t in p.trials if t["kind"] == "rating")
    with pytest.raises(ValueError):
        sessions.record_answer(engine, p, rating_trial["trial_index"], chosen_class=3, rating=None)
    with pytest.raises(IntegrityError):  # the database CHECK constraint
        sessions.record_answer(engine, p, rating_trial["trial_index"], chosen_class=3, rating=9)
    assert sessions.valid_participant_id("5f1e2d3c4b5a69788796a5b4") and sessions.valid_participant_id("pid_7")
    assert sessions.valid_participant_id("x' OR 1=1 --") is None and sessions.valid_participant_id("") is None


def _answer(engine, p, trial, rating=4, chosen=None) -> bool:
    if trial["kind"] == "pair":
        return sessions.record_answer(engine, p, trial["trial_index"], pair_choice=0, rt_ms=900)
    return sessions.record_answer(engine, p, trial["trial_index"], chosen_class=trial.get("target_class") or 0
                                  if chosen is None else chosen, rating=rating, rt_ms=900)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_20_concurrent_participants_store_exactly_1000_answers(backend, tmp_path):
    engine, _ = engine_for_backend(backend, tmp_path)
    install_set(engine, synthetic_rows(n_items=46))
    errors = []

    def participant(k: int) -> None:
        try:
            p = sessions.register(engine, f"load-{k}")
            for t in p.trials[:50]:
                _answer(engine, p, t)
                _answer(engine, p, t, rating=1)  # the impatient double click
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=participant, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(responses)).scalar_one()
        distinct = conn.execute(text("SELECT COUNT(*) FROM (SELECT DISTINCT participant_id, trial_index "
                                     "FROM responses) d")).scalar_one()
        ones = conn.execute(select(func.count()).select_from(responses).where(responses.c.rating == 1)).scalar_one()
    assert total == distinct == 1000
    assert ones == 0  # every stored answer is the first one
    lists = Counter(sessions.find(engine, f"load-{k}").list_index for k in range(20))
    assert set(lists.values()) == {5}  # 20 participants over 4 lists: perfectly balanced


WRITER = """
import sys
from gradviz.study import sessions
from gradviz.study.db import make_engine
engine = make_engine(sys.argv[1])
for k in range(1000):
    p = sessions.register(engine, f"crash-{k}")
    for t in p.trials:
        if t["kind"] == "pair":
            sessions.record_answer(engine, p, t["trial_index"], pair_choice=1)
        else:
            sessions.record_answer(engine, p, t["trial_index"], chosen_class=1, rating=3)
        print(f"ACK {p.participant_id} {t['trial_index']}", flush=True)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_mid_study_loses_no_acknowledged_answer(backend, tmp_path):
    engine, url = engine_for_backend(backend, tmp_path)
    install_set(engine, synthetic_rows())
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked = []
    for line in proc.stdout:
        acked.append(tuple(line.split()[1:]))
        if len(acked) == 300:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    acked += [tuple(line.split()[1:]) for line in proc.stdout.read().splitlines() if line.startswith("ACK")]
    engine.dispose()
    reopened = make_engine(url)
    with reopened.connect() as conn:
        stored = {(p, str(i)) for p, i in conn.execute(select(responses.c.participant_id, responses.c.trial_index))}
        if backend == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert set(acked) <= stored
    assert len(stored) - len(acked) <= 1  # at most the one answer committed but not yet acknowledged


def test_analysis_recovers_known_effects(tmp_path):
    """Synthetic raters: gradreg stimuli get ratings 2 points higher; one participant fails the checks."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}")
    install_set(engine, synthetic_rows(n_items=16))
    for k in range(24):
        p = sessions.register(engine, f"r{k}")
        stims = {s: sessions.stimulus(engine, s) for s in {t["stimulus_id"] for t in p.trials}}
        for t in p.trials:
            s = stims[t["stimulus_id"]]
            if t["kind"] == "attention":
                cls = (s["true_class"] + 1) % 10 if k == 0 else s["true_class"]  # r0 fails every check
                sessions.record_answer(engine, p, t["trial_index"], chosen_class=cls, rating=4)
            elif t["kind"] == "pair":
                sessions.record_answer(engine, p, t["trial_index"], pair_choice=0)
            else:
                base = 5 if s["source_model"] == "m-gradreg" else 3
                rating = base + (k + t["trial_index"]) % 3 - 1  # spread ±1 around the model's level
                cls = s["target_class"] if s["source_model"] == "m-gradreg" else s["true_class"]
                sessions.record_answer(engine, p, t["trial_index"], chosen_class=cls, rating=rating)
    frame = responses_frame(engine)
    result = analyse(frame)
    att = result["attention"].set_index("participant_id")
    assert att.loc["r0", "excluded"] and att.excluded.sum() == 1
    means = result["rating"].set_index("source_model")
    assert means.loc["m-gradreg", "mean"] == pytest.approx(5.0, abs=0.3)
    assert means.loc["m-normal", "mean"] == pytest.approx(3.0, abs=0.3)
    g = means.loc["m-gradreg"]
    assert g.ci_low < g["mean"] < g.ci_high and g.ci_high - g.ci_low < 0.6
    share = result["target_share"].set_index("source_model")
    assert share.loc["m-gradreg", "mean"] == 1.0 and share.loc["m-normal", "mean"] == 0.0
    tests = result["tests"]
    rating_tests = tests[tests.measure == "rating"]
    assert (rating_tests.p_value < 0.001).all() and (rating_tests.difference > 1.5).all()
    assert set(rating_tests.b) == set(MODELS) - {"m-gradreg"}
    assert result["sizes"]["l2"]["rho"] == result["sizes"]["l2"]["rho"]  # a number, not NaN


def test_permutation_test_finds_nothing_in_noise():
    rng = np.random.default_rng(1)
    rows = [{"participant_id": f"p{i}", "source_model": m, "rating": int(rng.integers(1, 8))}
            for i in range(30) for m in ("a", "b") for _ in range(4)]
    result = paired_permutation(pd.DataFrame(rows), "a", "b", n_perm=2000)
    assert result["p_value"] > 0.05 and result["participants"] == 30


def test_krippendorff_alpha_extremes():
    perfect = pd.DataFrame([{"participant_id": f"p{r}", "stimulus_id": f"s{s}", "rating": 1 + s % 7}
                            for r in range(3) for s in range(10)])
    assert agreement(perfect) == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    noise = perfect.assign(rating=rng.integers(1, 8, len(perfect)))
    assert agreement(noise) < 0.3


def test_cluster_bootstrap_interval_covers_the_mean():
    frame = pd.DataFrame([{"participant_id": f"p{i}", "source_model": "m", "rating": 1 + (i % 7)}
                          for i in range(70)])
    out = cluster_bootstrap(frame, "rating").iloc[0]
    assert out["mean"] == pytest.approx(4.0) and out.ci_low < 4.0 < out.ci_high and out.n == 70


@pytest.mark.slow
def test_build_stimuli_from_real_models(tmp_path, tiny_train, user_models):
    import json

    from gradviz.data.images import from_png16
    from gradviz.nets.store import save_model
    from gradviz.study.stimuli import StimulusConfig, build_stimuli
    from gradviz.study.stimulus_sets import load_set, stimulus_zip, store_stimuli
    from gradviz.training.config import TrainConfig
    from gradviz.training.loop import train_model

    names = []
    for defense in ("normal", "gradreg"):
        model, card = train_model(TrainConfig(defense=defense, lam=1.0, steps=5, batch_size=64, width=8,
                                              device="cpu", name=f"s-{defense}"), tiny_train, progress=False)
        save_model(model, card, user_models)
        names.append(card["name"])
    config = StimulusConfig(models=names, attacks=["itgsm", "tgsm"], eps=[0.2], items_per_class=1,
                            attention_checks=2, seed=3,
                            attack_params={"itgsm": {"steps": 5, "step_scale": 0.125}})
    rows = build_stimuli(config)
    adversarial = [r for r in rows if r["kind"] == "adversarial"]
    assert len(adversarial) == 10 * 2 * 2 and sum(r["kind"] == "attention" for r in rows) == 2
    assert sorted(Counter(r["true_class"] for r in adversarial).values()) == [4] * 10  # balanced over classes
    for r in adversarial:
        p = json.loads(r["provenance"])
        assert p["target_class"] == (p["true_class"] + 1) % 10 and set(p["predictions"]) == set(names)
        assert len(p["source_sha256"]) == 64 and 0 < r["l2"] and r["ssim"] <= 1
        assert float(from_png16(r["png"]).max()) <= 1.0
    assert build_stimuli(config)[0]["stimulus_id"] == rows[0]["stimulus_id"]  # seeded: the same set again
    engine = make_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    assert store_stimuli(engine, rows) == len(rows) and store_stimuli(engine, rows) == 0
    assert len(load_set(engine, config.set_id())) == len(rows)
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(stimulus_zip(engine, config.set_id()))) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == len(rows)
        assert len(json.loads(z.read("manifest.json"))) == len(rows)
