"""Written as an attacker would: names that try to leave their folder, a login brute-forced in parallel, uploads
that reach the wrong decoder, half-written files. Each test is one finding of the review behind the threat model
in the README."""
from __future__ import annotations

import io
import json
import os
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

ROOT = Path(__file__).resolve().parents[2]
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
    from gradviz.evaluation.runs.matrix import EvalConfig, evaluate

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
    assert at.title[0].value == "This link is not valid"  # the study is the front page (and wants an id)
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


# --- The second attack on the study deployment (issue: "Hardened against a patient attacker") -----------------

HOSTILE_VARIANTS = ["\n", " ", "\x00"]  # appended (and prepended) to a value that is valid on its own
LONG = "a" * 10_000


def _validators():
    """(what, accepts(value) -> bool, a valid value): every check of a name, id, token or code in the project."""
    from gradviz.data.classes import dataset_names
    from gradviz.names import whole_match
    from gradviz.study import sessions

    def link_id(value):
        try:
            return sessions.checked_link_id("STUDY_ID", value) is not None
        except ValueError:
            return False

    def plain_name(what):  # models, checkpoints, trials, recipe entries, results: safe_name
        def check(value):
            try:
                return safe_name(value, what) == value
            except UnsafeNameError:
                return False
        return check

    code = auth.new_recovery_code()
    configured = auth.hash_password("correct horse battery", salt=b"0" * 16, recovery_code=code)
    return [
        ("prolific id", lambda v: sessions.valid_participant_id(v) is not None, "5f1a2b3c4d5e6f7a8b9c0d1e"),
        ("plain participant id", lambda v: sessions.valid_participant_id(v) is not None, "participant_7"),
        ("STUDY_ID / SESSION_ID", link_id, "s1"),
        ("participant key", lambda v: whole_match(sessions.TOKEN, v), "A" * 32),
        ("model name", plain_name("model name"), "mnist-gradreg"),
        ("recipe entry name", plain_name("entry name"), "gradreg-lam0.01"),
        ("recovery code", lambda v: v.strip() == v and auth.recovery_matches(v, configured), code),
        ("dataset name", lambda v: v in dataset_names(), "mnist"),
    ]


@pytest.mark.parametrize("what, accepts, valid", _validators(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_validator_checks_the_whole_string(what, accepts, valid):
    assert accepts(valid), what
    for bad in [valid + c for c in HOSTILE_VARIANTS] + [c + valid for c in HOSTILE_VARIANTS] + [LONG, "é" + valid]:
        assert not accepts(bad), (what, bad[:40])


def test_an_id_with_a_trailing_newline_is_not_a_second_participant(open_study):
    """Finding 1: `$` matched before a trailing newline, so `A\\n` enrolled A a second time with a second slot."""
    from gradviz.study import sessions

    first = study_page("participant_a")
    first.checkbox(key="agree").check().run()
    first.button(key="start").click().run()
    again = study_page("participant_a\n")
    assert again.title[0].value == "This link is not valid" and not again.checkbox
    with pytest.raises(ValueError, match="STUDY_ID"):
        sessions.register(open_study, "participant_b", study_id="s1\n")
    assert sessions.progress(open_study)["started"] == 1


def _cheap_checks(monkeypatch) -> list[str]:
    """Replace scrypt by a counted constant-time compare (the throttle, not the hash, is under test)."""
    checked = []
    monkeypatch.setattr(auth, "password_matches", lambda given, configured: checked.append(given) or
                        given == "correct horse battery")
    return checked


def test_an_attacker_with_1000_addresses_at_the_ceiling_cannot_lock_the_researcher_out(tmp_path, monkeypatch):
    """Finding 2: while the global ceiling was full, the researcher's correct password was refused and counted as
    their failure; five such refusals put them into backoff. Now the ceiling gives the attempt back, a recent
    success exempts an address, and the recovery code exempts any address."""
    from gradviz.study.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'study.sqlite'}")
    code = auth.new_recovery_code()
    configured = auth.hash_password("correct horse battery", salt=b"1" * 16, recovery_code=code)
    checked = _cheap_checks(monkeypatch)
    home, travelling = "198.51.100.7", "192.0.2.44"
    assert auth.login(engine, home, "correct horse battery", configured, now=0.0).ok  # an earlier visit
    start = 86_400.0
    attackers = [f"10.{i // 250}.{i % 250}.1" for i in range(1000)]
    outcomes = []
    for i, address in enumerate(attackers):  # 1,000 guesses inside one minute: the ceiling is full after 30
        now = start + i * 0.05
        outcomes.append(auth.login(engine, address, f"guess-{i}", configured, now=now))
        if i % 100 == 50:  # the researcher tries while the flood goes on
            assert auth.login(engine, home, "correct horse battery", configured, now=now).ok
            away = auth.login(engine, travelling, "correct horse battery", configured, now=now)
            assert away.refused and away.ceiling  # no recent success there, no code: held by the ceiling …
    with engine.connect() as conn:  # … but it cost the researcher's new address nothing
        from sqlalchemy import select

        from gradviz.study.db import login_throttle
        failures = conn.execute(select(login_throttle.c.failures).where(login_throttle.c.client == travelling)).scalar()
    assert failures == 0
    assert auth.login(engine, travelling, "correct horse battery", configured, now=start + 50, recovery_code=code).ok
    assert not any(o.ok for o in outcomes) and sum(not o.refused for o in outcomes) == auth.GLOBAL_CEILING
    assert len(checked) == 1 + auth.GLOBAL_CEILING + 10 + 1  # the work stays bounded: 30 guesses checked a minute


def test_a_wrong_or_missing_recovery_code_exempts_nobody(tmp_path, monkeypatch):
    from gradviz.study.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'study.sqlite'}")
    code = auth.new_recovery_code()
    configured = auth.hash_password("correct horse battery", salt=b"1" * 16, recovery_code=code)
    _cheap_checks(monkeypatch)
    for i in range(auth.GLOBAL_CEILING):
        auth.login(engine, f"10.0.0.{i}", "x", configured, now=10.0)
    assert auth.login(engine, "10.9.9.9", "correct horse battery", configured, now=10.0, recovery_code="AAAA").ceiling
    legacy = auth.hash_password("correct horse battery", salt=b"1" * 16)  # a hash made before recovery codes
    assert auth.login(engine, "10.9.9.8", "correct horse battery", legacy, now=10.0, recovery_code=code).ceiling


def test_hash_password_prints_the_hash_on_stdout_and_a_recovery_code_on_stderr(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["study", "hash-password"]) == 0
    out, err = capsys.readouterr()
    configured = out.strip()
    code = err.rsplit(": ", 1)[1].strip()
    assert auth.password_matches("correct horse battery", configured) and auth.recovery_matches(code, configured)
    assert code not in out


def _upgrade(port: int, host: str, origin: str | None = None) -> str:
    """The status line a WebSocket upgrade of Streamlit's stream gets with this Host and Origin."""
    import socket

    lines = ["GET /_stcore/stream HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: streamlit"] + ([f"Origin: {origin}"] if origin else [])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(200).split(b"\r\n")[0].decode()


@pytest.fixture
def lab_server(tmp_path):
    from benchmarks.study_load import start_streamlit

    env = {**os.environ, "GRADVIZ_HOME": str(tmp_path), "GRADVIZ_MODE": "lab"}
    proc, url = start_streamlit(env)
    yield int(url.rsplit(":", 1)[1])
    proc.terminate()
    proc.wait(timeout=20)


def test_a_web_page_cannot_drive_the_lab_through_dns_rebinding(lab_server):
    """Finding 3: any Host and Origin got `101 Switching Protocols`, so a rebound name reached the lab."""
    port = lab_server
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert " 101 " in _upgrade(port, host), host
    assert " 403 " in _upgrade(port, f"rebind.attacker.example:{port}")
    assert " 403 " in _upgrade(port, f"rebind.attacker.example:{port}", f"http://rebind.attacker.example:{port}")
    assert " 403 " in _upgrade(port, f"localhost:{port}", "http://evil.example")


def test_study_replicas_accept_only_the_configured_site():
    script = (ROOT / "deploy" / "run_replicas.sh").read_text()
    assert '--server.allowedHosts "${GRADVIZ_SITE:-localhost}"' in script


@pytest.mark.parametrize("peer, forwarded, expected", [
    (None, None, "127.0.0.1"),  # directly, from this machine (Streamlit hides loopback addresses)
    ("203.0.113.9", None, "203.0.113.9"),  # directly, from elsewhere
    ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # directly, with a forged header: not a proxy, not believed
    (None, "198.51.100.1", "198.51.100.1"),  # through Caddy on loopback
    (None, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # a forged entry before the one Caddy appended
    (None, "garbage, 198.51.100.1", "198.51.100.1"),
    (None, "198.51.100.1, not-an-address", "127.0.0.1"),  # a malformed last hop: the proxy itself is named
    (None, "::ffff:198.51.100.1", "198.51.100.1"),
    (None, "2001:db8::5", "2001:db8::5"),
])
def test_the_client_is_named_by_the_last_untrusted_hop(peer, forwarded, expected):
    """Finding 4: X-Forwarded-For was read only where it never arrived, and its first (forgeable) entry."""
    from gradviz.study.clients import client_address, trusted_proxies

    assert client_address(peer, forwarded, trusted_proxies("127.0.0.1,::1")) == expected


def test_a_cdn_in_front_of_caddy_is_trusted_only_when_configured():
    from gradviz.study.clients import client_address, trusted_proxies

    chain = "198.51.100.1, 203.0.113.5"  # the visitor, then the CDN's edge that Caddy saw
    assert client_address(None, chain, trusted_proxies("127.0.0.1")) == "203.0.113.5"
    assert client_address(None, chain, trusted_proxies("127.0.0.1, 203.0.113.0/24")) == "198.51.100.1"
    with pytest.raises(ValueError, match="GRADVIZ_TRUSTED_PROXIES"):
        trusted_proxies("127.0.0.1, proxy.example")


@pytest.mark.parametrize("pid", ["../..", "x" * 10_000, "émile", "a b", "=cmd|' /C calc'!A0"])
def test_a_malformed_id_is_a_clear_page_not_a_silent_new_id(open_study, pid):
    """Finding 5: a malformed Prolific id was replaced by a random anon id and consent went ahead."""
    from gradviz.study import sessions

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["PROLIFIC_PID"] = pid
    at.run()
    assert at.title[0].value == "This link is not valid" and not at.checkbox and not at.exception
    assert "return to Prolific" in at.warning[0].value
    assert sessions.progress(open_study)["started"] == 0


def test_in_study_mode_a_link_without_an_id_enrols_nobody_unless_the_researcher_allows_it(open_study, monkeypatch):
    from gradviz.study import sessions
    from gradviz.study.db import set_setting

    monkeypatch.setenv("GRADVIZ_MODE", "study")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.title[0].value == "This link is not valid" and not at.checkbox
    set_setting(open_study, sessions.ANONYMOUS, "1")
    assert sessions.anonymous_allowed(open_study)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.title[0].value == "Consent"


def test_the_stimulus_count_is_what_was_stored(backend_engine):
    """Finding 7: `study build` printed "-22 new stimuli stored" (PostgreSQL reports -1 per ignored insert)."""
    from study_helpers import install_set, synthetic_rows

    from gradviz.study import sessions
    from gradviz.study.stimulus_sets import store_stimuli

    rows = synthetic_rows(n_items=4, n_attention=1)
    assert store_stimuli(backend_engine, rows) == len(rows) and store_stimuli(backend_engine, rows) == 0
    install_set(backend_engine, rows)
    first = sessions.register(backend_engine, "racer")
    assert sessions.record_answer(backend_engine, first, 0, chosen_class=1, rating=3, pair_choice=0)
    assert not sessions.record_answer(backend_engine, first, 0, chosen_class=2, rating=4, pair_choice=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_engine(request, tmp_path):
    from study_helpers import engine_for_backend

    return engine_for_backend(request.param, tmp_path)[0]


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(title)
    return text[start:text.index("\n#", start)] if "\n#" in text[start:] else text[start:]


def test_the_readme_behind_https_paragraph_matches_the_caddyfile():
    """Finding 8: the README told the reader to replace lines that are not in the Caddyfile."""
    import re

    paragraph = _readme_section("**Behind HTTPS.**").split("\n\n")[0]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    replicas = (ROOT / "deploy" / "run_replicas.sh").read_text()
    code = caddyfile + replicas + "".join(p.read_text() for p in (ROOT / "gradviz").rglob("*.py"))
    quoted = re.findall(r"`([^`]+)`", paragraph)
    assert any(q.startswith("https://{$") for q in quoted) and "auto_https off" not in paragraph
    for snippet in quoted:
        if snippet.startswith(("https://{$", "auto_https")):
            assert snippet in caddyfile, snippet  # quoted as it stands in the file
        elif snippet.startswith("--server."):
            assert snippet in replicas, snippet
    for variable in re.findall(r"GRADVIZ_[A-Z_]+", paragraph):
        assert variable in code, variable


def test_every_protected_line_of_the_threat_model_names_a_test_that_exists():
    import re

    model = _readme_section("### Threat model")
    protected = model[model.index("| Protected"):model.index("**Not protected")]
    rows = [r for r in protected.splitlines() if r.startswith("| ") and not r.startswith(("| Protected", "| ---"))]
    tests = set(re.findall(r"^def (test_\w+)", Path(__file__).read_text(), re.M))
    tests |= {f"{p.stem}::{t}" for p in ROOT.glob("tests/**/test_*.py")
              for t in re.findall(r"^def (test_\w+)", p.read_text(), re.M)}
    assert len(rows) >= 15
    for row in rows:
        named = re.findall(r"`((?:test_\w+\.py::)?test_\w+)`", row)
        assert named, row
        for name in named:
            assert name.replace(".py::", "::") in tests or name in tests, name


@pytest.fixture
def caddy_in_front_of_an_echo(tmp_path):
    """deploy/Caddyfile in front of a small upstream that answers every path with the headers it received and a
    Streamlit-like XSRF cookie: what Caddy adds, removes and hides, without a Streamlit server."""
    import shutil
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmarks.study_load import caddy_root_certificate, start_caddy

    if shutil.which("caddy") is None and os.environ.get("CI") != "true":
        pytest.skip("caddy is not installed (CI installs it)")

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok" if self.path == "/_stcore/health" else json.dumps(dict(self.headers.items())).encode()
            self.send_response(200)
            self.send_header("Set-Cookie", "_streamlit_xsrf=2|abc|def|1; Path=/; SameSite=Lax")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proc, proxy = start_caddy([f"http://127.0.0.1:{upstream.server_port}"], tmp_path)
    yield proxy, caddy_root_certificate(tmp_path)
    proc.terminate()
    proc.wait(timeout=20)
    upstream.shutdown()


def _through(proxy: str, root: Path, path: str, headers: dict | None = None):
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{proxy}{path}", headers=headers or {})
    try:
        return urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context(cafile=str(root)))
    except urllib.error.HTTPError as error:
        return error


def test_through_caddy_metrics_are_hidden_and_cookies_are_secure(caddy_in_front_of_an_echo):
    """Finding 6: /_stcore/metrics was public; gradviz_replica and _streamlit_xsrf had neither Secure nor HttpOnly."""
    proxy, root = caddy_in_front_of_an_echo
    for path in ("/_stcore/metrics", "/_stcore/metrics/", "/_stcore/metrics?x=1"):
        assert _through(proxy, root, path).status == 404, path
    cookies = {c.split("=", 1)[0]: c for c in _through(proxy, root, "/study").headers.get_all("Set-Cookie")}
    assert set(cookies) == {"gradviz_replica", "_streamlit_xsrf"}
    assert "; Secure" in cookies["gradviz_replica"] and "; HttpOnly" in cookies["gradviz_replica"]
    assert "; Secure" in cookies["_streamlit_xsrf"] and "HttpOnly" not in cookies["_streamlit_xsrf"]  # read by JS


def test_through_caddy_a_forged_forwarded_for_names_nobody_else(caddy_in_front_of_an_echo):
    """Finding 4, through the real proxy: the replica sees the forged entry dropped, and the client named is the
    address that connected to Caddy (here loopback), never the one the visitor wrote."""
    from gradviz.study.clients import client_address

    proxy, root = caddy_in_front_of_an_echo
    seen = json.loads(_through(proxy, root, "/study", {"X-Forwarded-For": "203.0.113.66"}).read())
    forwarded = {k.lower(): v for k, v in seen.items()}.get("x-forwarded-for")
    assert "203.0.113.66" not in (forwarded or "")
    assert client_address(None, forwarded) == "127.0.0.1"
