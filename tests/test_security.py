"""Written as an attacker would: names that try to leave their folder, a login brute-forced in parallel, uploads
that reach the wrong decoder, half-written files. Each test is one finding of the review behind the threat model
in the README."""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from gradviz.cli.main import main
from gradviz.nets.architecture import PaperCNN
from gradviz.nets.checkpoints import checkpoint_path, list_checkpoints
from gradviz.nets.store import load_model, save_model
from gradviz.paths import UnsafeNameError, path_inside, safe_name
from gradviz.study import auth

ROOT = Path(__file__).resolve().parent.parent
TRAVERSALS = ["../evil", "..", "a/b", "/etc/passwd", ".hidden", "x" * 65, "", "ok\nname", "nul\x00"]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_a_name_that_is_not_a_plain_file_name_is_refused(name, tmp_path):
    with pytest.raises(UnsafeNameError, match="use 1 to 64 letters, digits"):
        safe_name(name)
    with pytest.raises(UnsafeNameError):
        path_inside(tmp_path, name, ".json")


def test_a_symlinked_name_cannot_lead_out_of_its_folder(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "link.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafeNameError, match="leads out of"):
        path_inside(tmp_path / "models", "link", ".json")


def test_train_with_a_traversal_name_is_refused_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", "--name", "../evil", "--steps", "1", "--width", "8", "--out", str(out), "--device", "cpu",
                 "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert code == 2 and "model name '../evil' is refused" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*evil*"))


def test_the_python_api_refuses_traversal_names(tmp_path):
    model = PaperCNN(width=8)
    with pytest.raises(UnsafeNameError):
        save_model(model, {"name": "../evil", "architecture": {}}, tmp_path / "models")
    with pytest.raises(UnsafeNameError):
        checkpoint_path(tmp_path, "../../evil")
    assert not any(tmp_path.rglob("*evil*"))


def test_a_user_model_cannot_take_a_zoo_models_name(tmp_path, capsys):
    code = main(["train", "--name", "mnist-normal", "--steps", "1", "--width", "8", "--device", "cpu"])
    assert code == 2 and "'mnist-normal' is the name of a zoo model" in capsys.readouterr().err


def test_the_train_page_refuses_a_traversal_name():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/train.py").run()
    at.text_input[0].input("../evil")
    at.button(key="t_start").click().run()
    assert any("model name '../evil' is refused" in e.value for e in at.error), [e.value for e in at.error]
    assert "train_job" not in at.session_state


def test_a_recipe_entry_with_a_traversal_name_is_refused(tmp_path, capsys):
    path = tmp_path / "r.toml"
    path.write_text('dataset = "mnist"\n[models."../evil"]\ndefense = "normal"\n')
    assert main(["zoo", "build", str(path), "--dry-run", "--out", str(tmp_path)]) == 2
    assert "entry name '../evil' is refused" in capsys.readouterr().err


HASH = auth.hash_password("correct horse battery", salt=b"0" * 16)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_forty_parallel_wrong_passwords_reach_scrypt_at_most_five_times(backend, tmp_path, monkeypatch):
    from study_helpers import engine_for_backend

    engine, _ = engine_for_backend(backend, tmp_path)
    checked, real = [], auth.password_matches
    monkeypatch.setattr(auth, "password_matches", lambda g, c: checked.append(g) or real(g, c))
    results, start = [], threading.Barrier(40)

    def guess(i: int) -> None:
        start.wait()
        results.append(auth.login(engine, "203.0.113.9", f"guess-{i}", HASH))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checked) <= auth.FREE_TRIES and not any(r.ok for r in results)
    assert sum(r.refused for r in results) >= 40 - auth.FREE_TRIES
    other = auth.login(engine, "198.51.100.7", "correct horse battery", HASH)
    assert other.ok  # another client is not locked out by the attacker's failures


def test_the_backoff_grows_and_a_success_resets_it(tmp_path):
    from gradviz.study.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'study.sqlite'}")
    now = 1_000_000.0
    for _ in range(auth.FREE_TRIES):
        assert not auth.login(engine, "c", "wrong", HASH, now=now).refused
    refused = auth.login(engine, "c", "correct horse battery", HASH, now=now + 1)
    assert refused.refused and refused.wait == pytest.approx(1.0)  # 2 s after the fifth failure
    assert auth.login(engine, "c", "wrong", HASH, now=now + 2.5).wait == pytest.approx(4.0)  # then 4 s
    assert auth.login(engine, "c", "correct horse battery", HASH, now=now + 7).ok
    assert not auth.login(engine, "c", "wrong", HASH, now=now + 7).refused  # the count started again


def test_a_global_ceiling_bounds_the_checks_of_many_clients(tmp_path, monkeypatch):
    from gradviz.study.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'study.sqlite'}")
    monkeypatch.setattr(auth, "password_matches", lambda g, c: False)
    outcomes = [auth.login(engine, f"10.0.0.{i}", "x", HASH, now=50.0) for i in range(auth.GLOBAL_CEILING + 5)]
    assert sum(not o.refused for o in outcomes) == auth.GLOBAL_CEILING
    assert not auth.login(engine, "10.0.1.1", "x", HASH, now=50.0 + auth.WINDOW).refused  # the next minute


@pytest.mark.parametrize("configured", ["", "s3cret-pass", "scrypt$zz$yy", "scrypt$" + "0" * 32 + "$" + "1" * 12])
def test_plaintext_or_damaged_configured_passwords_are_refused(configured):
    with pytest.raises(auth.PasswordError):
        auth.checked_hash(configured)


def test_hash_password_reads_stdin_and_refuses_short_passwords(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["study", "hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert auth.password_matches("a long enough passphrase", printed)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["study", "hash-password"]) == 2 and "at least 12 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", "hash-password", "--password", "on-the-command-line"])


def test_a_logged_in_session_expires_when_idle():
    assert auth.session_expired(None)
    assert not auth.session_expired(1000.0, now=1000.0 + auth.IDLE_EXPIRY - 1)
    assert auth.session_expired(1000.0, now=1000.0 + auth.IDLE_EXPIRY + 1)


def test_an_eps_upload_never_reaches_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    from gradviz.data.images import ImageError, prepare_digit

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: pytest.fail("the EPS decoder ran"))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n%%EOF\n"
    with pytest.raises(ImageError, match="upload PNG, JPEG, GIF, BMP, TIFF, WEBP"):
        prepare_digit(eps)


def test_a_truncated_cache_entry_is_reported_and_recomputed(tmp_path):
    from gradviz.evaluation.matrix import EvalConfig, evaluate

    config = EvalConfig(dataset="mnist", models=["mnist-normal", "mnist-gradreg"], attacks=["fgsm"], eps=[0.0, 0.2],
                        n=20, device="cpu")
    first = evaluate(config, cache_dir=tmp_path, progress=False)
    (entry,) = [p for p in tmp_path.glob("*.json")][:1]
    entry.write_text(entry.read_text()[:25])  # cut off mid-write
    with pytest.warns(UserWarning, match="damaged cache entry"):
        again = evaluate(config, cache_dir=tmp_path, progress=False)
    assert again.rows.equals(first.rows)
    json.loads(entry.read_text())  # rewritten whole


def test_a_model_saved_over_another_is_never_left_half_replaced(tmp_path, monkeypatch):
    from gradviz.nets import store

    old, new = PaperCNN(width=8), PaperCNN(width=8)
    card = {"name": "m", "architecture": {"width": 8, "layers": "zoo", "num_classes": 10}}
    save_model(old, card, tmp_path)
    real = store.atomic_write

    def crash_on_card(path, write):
        if path.suffix == ".json":
            raise OSError("power cut")
        real(path, write)

    monkeypatch.setattr(store, "atomic_write", crash_on_card)
    with pytest.raises(OSError):
        save_model(new, card, tmp_path)
    loaded, _ = load_model(tmp_path / "m.json")  # the old model, whole
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), old.state_dict().values()))
    monkeypatch.setattr(store, "atomic_write", real)
    save_model(new, card, tmp_path)
    loaded, saved = load_model(tmp_path / "m.json")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), new.state_dict().values()))
    weights = {p.name for p in tmp_path.glob("m*.safetensors")}
    assert saved["weights_file"] in weights and len(weights) <= 2  # the crash's orphan at most, never the old one


def test_listing_checkpoints_survives_one_that_vanishes(tmp_path, monkeypatch):
    from gradviz.nets import checkpoints

    (tmp_path / f"gone{checkpoints.SUFFIX}").write_bytes(b"x")
    monkeypatch.setattr(checkpoints, "read_metadata",
                        lambda p: (_ for _ in ()).throw(checkpoints.CheckpointError("vanished")))
    assert list_checkpoints(tmp_path) == []


@pytest.fixture
def open_study(tmp_path, monkeypatch):
    from study_helpers import sqlite_study

    return sqlite_study(tmp_path, monkeypatch, "SECRET7")


def study_page(pid: str | None = None, token: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in {"pid": pid, "t": token, **params}.items():
        if value is not None:
            at.query_params[key] = value
    at.run()
    if pid is None:
        at.switch_page("app_pages/study.py").run()
    return at


def test_a_participant_id_without_its_key_can_neither_answer_nor_withdraw_nor_read_the_code(open_study):
    from gradviz.study import sessions

    victim = sessions.register(open_study, "victim")
    for token in (None, "x" * 32, victim.token[:-1] + ("A" if victim.token[-1] != "A" else "B")):
        at = study_page("victim", token)
        assert at.title[0].value == "This study link is already in use", token
        assert not [b for b in at.button if b.key in ("withdraw", "begin", "start")]
        assert not any("SECRET7" in s.value for s in at.success)
    assert sessions.answered(open_study, "victim") == set() and sessions.find(open_study, "victim").withdrawn_at is None
    owner = study_page("victim", victim.token)
    assert owner.title[0].value == "Instructions"  # the holder of the link goes on


def test_anonymous_visits_take_no_counterbalancing_slot_until_consent(open_study):
    from gradviz.study import sessions

    for _ in range(3):
        at = study_page()
        assert at.title[0].value == "Consent" and "pid" not in at.query_params  # nobody until they agree
    assert sessions.progress(open_study)["started"] == 0
    at.checkbox(key="agree").check().run()
    at.button(key="start").click().run()
    assert sessions.progress(open_study)["started"] == 1 and "t" in at.query_params


@pytest.mark.parametrize("params, message", [
    ({"STUDY_ID": "=HYPERLINK(\"http://x\")"}, "STUDY_ID in the study link is not a plain id"),
    ({"SESSION_ID": "s" * 65}, "SESSION_ID in the study link is not a plain id"),
])
def test_malformed_study_and_session_ids_are_refused_with_a_message(open_study, params, message):
    from gradviz.study import sessions

    at = study_page("mallory", **params)
    at.checkbox(key="agree").check().run()
    at.button(key="start").click().run()
    assert any(message in e.value for e in at.error) and not at.exception
    assert sessions.find(open_study, "mallory") is None


def test_exported_text_cells_never_run_as_spreadsheet_formulas():
    import pandas as pd

    from gradviz.study.analysis import export_frame

    frame = pd.DataFrame({"participant_id": ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "plain"], "rating": range(6)})
    out = export_frame(frame)
    assert list(out.participant_id) == ["'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "'\tx", "plain"]
    assert list(out.rating) == list(range(6))


def test_a_closed_study_says_so_before_consent_and_still_offers_the_return_link(open_study):
    from gradviz.study.db import set_setting

    set_setting(open_study, "open_unregistered", "0")  # not pre-registered, not opened for a pilot
    set_setting(open_study, "decline_code", "BACK1")
    at = study_page("early")
    assert at.title[0].value == "The study is not open yet" and not at.checkbox
    assert [b.proto.url for b in at.get("link_button")] == ["https://app.prolific.com/submissions/complete?cc=BACK1"]


def test_the_consent_text_counts_the_active_designs_images(open_study):
    from gradviz.study import sessions

    at = study_page("counter")
    n = sessions.trials_per_participant(open_study)
    assert f"You will see {n} images" in at.markdown[0].value and "about 25" not in at.markdown[0].value


def test_in_study_mode_no_explore_page_is_routed(monkeypatch, open_study):
    monkeypatch.setenv("GRADVIZ_MODE", "study")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.title[0].value == "Consent"  # the study is the front page
    for page in ("models", "saliency", "attack_lab", "grids", "robustness", "train", "experiments"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"app_pages/{page}.py")
    at.switch_page("app_pages/researcher.py").run()
    assert at.title[0].value == "Researcher"


def test_an_unknown_deployment_mode_is_an_error_not_the_whole_lab(monkeypatch):
    from gradviz.study.deployment import deployment_mode

    monkeypatch.setenv("GRADVIZ_MODE", "studdy")
    with pytest.raises(ValueError, match="GRADVIZ_MODE='studdy' is not a mode"):
        deployment_mode()


def test_the_dashboard_listens_on_loopback_by_default():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_a_researcher_looking_at_the_study_page_is_not_turned_into_a_participant(open_study):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/study.py").run()
    assert at.title[0].value == "Consent" and not at.query_params  # no id put into the address before consent
    at.switch_page("app_pages/models.py").run()  # the navigation is still there: back to the lab
    assert not at.exception and at.title[0].value != "Consent"


def test_a_user_models_default_name_steps_around_the_zoo(user_models, capsys):
    code = main(["train", "--steps", "1", "--width", "8", "--batch-size", "16", "--device", "cpu"])
    assert code == 0 and (user_models / "mnist-normal-2.json").is_file()
    assert "mnist-normal-2" in capsys.readouterr().out
