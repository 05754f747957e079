"""The pre-registered analysis (mixed model), the power analysis, pre-registration and withdrawal."""
from __future__ import annotations

import dataclasses
import io
import json
import threading
import zipfile

import numpy as np
import pytest
from study_helpers import install_set, synthetic_rows

from gradviz.study import preregistration, sessions
from gradviz.study.db import make_engine
from gradviz.study.export import study_archive
from gradviz.study.mixed_model import fit_mixed
from gradviz.study.power import Assumptions, Design, rejection_rate, required_participants, simulate
from gradviz.study.stimulus_sets import activate_set, store_stimuli

MODELS = ["m-normal", "m-distilled", "m-advtrain", "m-gradreg"]


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'study.sqlite'}")
    install_set(engine, synthetic_rows(n_items=8, n_attention=1))
    return engine


def answer_all(engine, pid: str, rating: int = 4) -> sessions.Participant:
    p = sessions.register(engine, pid)
    for t in p.trials:
        extra = {"pair_choice": 0} if t["kind"] == "pair" else {"chosen_class": 1, "rating": rating}
        sessions.record_answer(engine, p, t["trial_index"], **extra)
    return p


def test_mixed_model_recovers_a_planted_contrast_and_variances():
    design = Design.synthetic(20, MODELS, "m-gradreg")
    truth = Assumptions(effect=0.8, intercept=4.0, sd_participant=1.0, sd_item=0.6, sd_residual=0.8)
    data = simulate(design, 120, truth, np.random.default_rng(1))
    data["rating"] = data.rating.astype(float)
    fit = fit_mixed(data, "m-gradreg")
    assert abs(fit.contrast - 0.8) < 3 * fit.se and fit.p_value < 1e-6
    assert 0.5 < fit.variances["participant"] < 2.0 and fit.variances["item"] > 0.1
    assert set(fit.coefficients.source_model) == set(MODELS) - {"m-gradreg"}
    with pytest.raises(ValueError, match="reference"):
        fit_mixed(data, "m-nonexistent")


@pytest.mark.slow
def test_power_analysis_keeps_its_promise_and_its_alpha():
    """N from the search, then fresh simulations: a planted effect is found at about the promised rate, a null
    effect at about α."""
    design = Design.synthetic(8, MODELS, "m-gradreg")
    planted = Assumptions(effect=0.6, sd_participant=0.8, sd_item=0.4, sd_residual=1.2)
    result = required_participants(design, planted, sims=100, seed=0)
    assert result.n_required is not None and result.n_required % 4 == 0
    promised = next(r["power"] for r in result.curve if r["n"] == result.n_required)
    assert promised >= 0.8
    below = [r for r in result.curve if r["n"] < result.n_required]
    assert below and all(r["power"] < 0.8 for r in below)
    found = rejection_rate(design, result.n_required, planted, sims=200, seed=12345)
    assert abs(found - promised) < 0.15 and found > 0.65
    null = rejection_rate(design, result.n_required, dataclasses.replace(planted, effect=0.0), sims=200, seed=54321)
    assert 0.0 <= null <= 0.10


def test_preregistration_freezes_the_design_before_anyone_consents(engine, tmp_path):
    record = preregistration.freeze(engine, 40, "gradreg stimuli look more like their target")
    assert preregistration.verify(engine) == []
    assert record["stimulus_set"]["set_id"] == "synthetic" and record["planned_participants"] == 40
    assert "(1 | participant) + (1 | item)" in record["analysis"]
    with pytest.raises(PermissionError, match="already pre-registered"):
        preregistration.freeze(engine, 50, "again")
    other = synthetic_rows(n_items=8, n_attention=1, set_id="other")
    store_stimuli(engine, other)
    with pytest.raises(PermissionError, match="pre-registered with stimulus set synthetic"):
        activate_set(engine, "other", "mnist")
    answer_all(engine, "p1")
    with zipfile.ZipFile(io.BytesIO(study_archive(engine))) as z:
        names = set(z.namelist())
        assert {"answers.csv", "preregistration.json", "preregistration.md", "manifest.json"} <= names
        assert json.loads(z.read("preregistration.json"))["record_sha256"] == record["record_sha256"]


def test_no_preregistration_after_the_first_participant_and_no_new_stimuli_after_answers(engine):
    answer_all(engine, "early")
    with pytest.raises(PermissionError, match="before the first participant"):
        preregistration.freeze(engine, 10, "too late")
    store_stimuli(engine, synthetic_rows(n_items=8, n_attention=1, set_id="other"))
    with pytest.raises(PermissionError, match="answers already exist"):
        activate_set(engine, "other", "mnist")


def test_a_changed_stimulus_is_caught(engine):
    preregistration.freeze(engine, 10, "h")
    from sqlalchemy import update

    from gradviz.study.db import stimuli

    with engine.begin() as conn:
        conn.execute(update(stimuli).where(stimuli.c.stimulus_id == "synthetic-0-m-normal-itgsm").values(png=b"x"))
    assert any("changed" in p for p in preregistration.verify(engine))


def test_withdrawal_deletes_answers_for_good(engine):
    p = sessions.register(engine, "leaver")
    first = p.trials[0]
    extra = {"pair_choice": 1} if first["kind"] == "pair" else {"chosen_class": 2, "rating": 3}
    assert sessions.record_answer(engine, p, 0, **extra)
    assert sessions.withdraw(engine, "leaver") == 1
    assert sessions.answered(engine, "leaver") == set()
    assert not sessions.record_answer(engine, p, 0, **extra)  # a late answer from another tab is refused
    assert sessions.register(engine, "leaver").withdrawn_at is not None  # not enrolled again
    assert sessions.progress(engine)["withdrawn"] == 1 and sessions.progress(engine)["answers"] == 0


def test_simultaneous_registrations_of_one_participant_take_one_slot(engine):
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        sessions.register(engine, "twice")

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sessions.register(engine, "next").list_index == 1  # slot 2: the lost races gave their claims back


def test_the_study_cli_runs_power_preregisters_and_exports(engine, tmp_path, capsys):
    from gradviz.cli.main import main

    url = str(engine.url)
    assert main(["study", "status", "--db-url", url]) == 0
    assert "not pre-registered" in capsys.readouterr().out
    assert main(["study", "power", "--db-url", url, "--effect", "3", "--sims", "20", "--max-n", "8"]) == 0
    out, err = capsys.readouterr()
    assert "participants needed for 80% power at α = 0.05: 4" in out and "20 simulations done" in err
    assert main(["study", "preregister", "--db-url", url, "--planned-n", "4", "--hypothesis", "gradreg wins"]) == 0
    assert "gradreg wins" in capsys.readouterr().out
    assert main(["study", "preregister", "--db-url", url, "--planned-n", "4"]) == 2  # once only
    assert "already pre-registered" in capsys.readouterr().err
    answer_all(engine, "p1")
    assert main(["study", "status", "--db-url", url]) == 0
    out = capsys.readouterr().out
    assert "pre-registered" in out and "MISMATCH" not in out
    archive = tmp_path / "study.zip"
    assert main(["study", "export", "--db-url", url, "--out", str(archive)]) == 0
    names = zipfile.ZipFile(archive).namelist()
    assert {"answers.csv", "preregistration.json", "preregistration.md"} <= set(names)


def test_the_cli_says_what_is_missing_before_a_stimulus_set_exists(tmp_path, capsys):
    from gradviz.cli.main import main

    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    assert main(["study", "power", "--db-url", url]) == 2
    assert "no stimulus set is active" in capsys.readouterr().err
