"""AppTest checks of the participant and researcher pages."""
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from study_helpers import sqlite_study

from gradviz.study import sessions
from gradviz.study.auth import hash_password
from gradviz.study.db import set_setting

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def study_db(tmp_path, monkeypatch):
    return sqlite_study(tmp_path, monkeypatch, "C0DE42")


def participant(pid: str, token: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["pid"] = pid
    if token is not None:
        at.query_params["t"] = token
    return at.run()


def link_token(at: AppTest) -> str:
    """The key the page put into the participant's URL after consent."""
    token = at.query_params["t"]
    return token[0] if isinstance(token, list) else token


def test_participant_flow_consent_to_completion_code(study_db):
    at = participant("alice")
    assert not at.exception
    assert at.title[0].value == "Consent"
    assert at.button(key="start").disabled
    at.checkbox(key="agree").check().run()
    at.button(key="start").click().run()
    assert at.title[0].value == "Instructions"
    at.button(key="begin").click().run()
    p = sessions.find(study_db, "alice")
    for _ in range(len(p.trials)):
        assert not at.exception, at.exception
        pair_buttons = [b for b in at.button if b.key and b.key.startswith("pair_")]
        if pair_buttons:
            pair_buttons[0].click().run()
        else:
            at.segmented_control[0].set_value(3)
            at.radio[0].set_value(5)
            at.button[0].click().run()
    assert any("C0DE42" in s.value for s in at.success)
    assert sessions.progress(study_db)["completed"] == 1


def test_rating_needs_both_answers_and_a_new_session_resumes(study_db):
    at = participant("bob")
    at.checkbox(key="agree").check().run()
    at.button(key="start").click().run()
    at.button(key="begin").click().run()
    p = sessions.find(study_db, "bob")
    for trial in p.trials[:2]:
        if trial["kind"] == "pair":
            [b for b in at.button if b.key and b.key.startswith("pair_")][0].click().run()
            continue
        at.button[0].click().run()
        assert any("answer both" in e.value for e in at.error)
        assert trial["trial_index"] not in sessions.answered(study_db, "bob")
        at.segmented_control[0].set_value(1)
        at.radio[0].set_value(2)
        at.button[0].click().run()
    assert sessions.answered(study_db, "bob") == {0, 1}
    again = participant("bob", link_token(at))  # a refresh: a brand-new session with the same link
    assert not again.exception
    texts = [el.proto.text for el in again.get("progress")]
    assert texts == [f"Image 3 of {len(p.trials)}"]


def test_decline_stores_nothing(study_db):
    at = participant("carol")
    at.button(key="decline").click().run()
    assert any("Nothing was stored" in i.value for i in at.info)
    assert sessions.find(study_db, "carol") is None


def test_participants_never_see_the_navigation(study_db):
    at = participant("dave")
    assert "Researcher" not in str(at.sidebar) and not at.exception


def researcher(monkeypatch) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/researcher.py")
    return at.run()


PASSWORD = "s3cret-pass-phrase"
PASSWORD_HASH = hash_password(PASSWORD)


def test_researcher_page_is_shut_with_a_plaintext_password(study_db, monkeypatch):
    monkeypatch.setenv("GRADVIZ_RESEARCHER_PASSWORD", PASSWORD)
    at = researcher(monkeypatch)
    assert any("not an scrypt hash" in e.value for e in at.error) and not at.get("metric")


def test_researcher_page_is_shut_without_a_password(study_db, monkeypatch):
    monkeypatch.delenv("GRADVIZ_RESEARCHER_PASSWORD", raising=False)
    at = researcher(monkeypatch)
    assert any("closed" in e.value for e in at.error) and not at.get("metric")


def test_researcher_login_throttle_and_dashboard(study_db, monkeypatch):
    from streamlit import cache_resource

    cache_resource.clear()  # the login throttle lives in a process-wide cache
    monkeypatch.setenv("GRADVIZ_RESEARCHER_PASSWORD", PASSWORD_HASH)
    p = sessions.register(study_db, "erin")
    for t in p.trials[:3]:
        if t["kind"] == "pair":
            sessions.record_answer(study_db, p, t["trial_index"], pair_choice=1)
        else:
            sessions.record_answer(study_db, p, t["trial_index"], chosen_class=2, rating=4)
    at = researcher(monkeypatch)
    at.text_input(key="password").input("wrong")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error) and not at.get("metric")
    at.text_input(key="password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["Participants started"] == "1" and metrics["Answers stored"] == "3"
    # Five failures from fresh sessions of one client make it wait, even with the right password: the count
    # lives in the database, not in the session or the process.
    cache_resource.clear()
    monkeypatch.setattr("gradviz.study.auth.BACKOFF_BASE", 600.0)  # the wait outlasts the test's slowest machine
    for _ in range(5):
        fresh = researcher(monkeypatch)
        fresh.text_input(key="password").input("guess")
        fresh.button[0].click().run()
    locked = researcher(monkeypatch)
    locked.text_input(key="password").input(PASSWORD)
    locked.button[0].click().run()
    assert any("Too many attempts; try again in" in e.value for e in locked.error)
    logout = at.sidebar.button(key="logout").click().run()
    assert logout.text_input(key="password") is not None and not logout.get("metric")


def start_trials(pid: str) -> AppTest:
    at = participant(pid)
    at.checkbox(key="agree").check().run()
    at.button(key="start").click().run()
    return at.button(key="begin").click().run()


def answer_current(at: AppTest) -> AppTest:
    pair_buttons = [b for b in at.button if b.key and b.key.startswith("pair_")]
    if pair_buttons:
        return pair_buttons[0].click().run()
    at.segmented_control[0].set_value(3)
    at.radio[0].set_value(5)
    return at.button[0].click().run()


def test_withdrawal_deletes_answers_and_is_final(study_db):
    set_setting(study_db, "decline_code", "RETURN9")
    at = start_trials("frank")
    answer_current(answer_current(at))
    assert sessions.answered(study_db, "frank") == {0, 1}
    at.button(key="withdraw").click().run()
    assert not at.exception, at.exception
    at.button(key="withdraw_confirm").click().run()
    assert at.title[0].value == "You have withdrawn"
    assert any("your 2 answers were deleted" in i.value for i in at.info)
    assert [b.proto.url for b in at.get("link_button")] == [
        "https://app.prolific.com/submissions/complete?cc=RETURN9"]
    assert sessions.answered(study_db, "frank") == set()
    assert sessions.progress(study_db)["withdrawn"] == 1
    again = participant("frank", link_token(at))  # coming back later does not reopen the study
    assert again.title[0].value == "You have withdrawn" and not again.get("progress")


def test_withdrawal_can_be_cancelled(study_db):
    at = start_trials("gina")
    at.button(key="withdraw").click().run()
    assert at.title[0].value == "Withdraw from the study?"
    at.button(key="withdraw_cancel").click().run()
    assert sessions.find(study_db, "gina").withdrawn_at is None
    answer_current(at)
    assert sessions.answered(study_db, "gina") == {0}


def test_declining_offers_the_prolific_return_link(study_db):
    set_setting(study_db, "decline_code", "RETURN9")
    at = participant("hank")
    at.button(key="decline").click().run()
    assert [b.proto.url for b in at.get("link_button")] == [
        "https://app.prolific.com/submissions/complete?cc=RETURN9"]
    assert sessions.find(study_db, "hank") is None


def logged_in_researcher(monkeypatch) -> AppTest:
    from streamlit import cache_resource

    cache_resource.clear()
    monkeypatch.setenv("GRADVIZ_RESEARCHER_PASSWORD", PASSWORD_HASH)
    at = researcher(monkeypatch)
    at.text_input(key="password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_researcher_counts_withdrawals_and_refuses_a_late_preregistration(study_db, monkeypatch):
    p = sessions.register(study_db, "ivy")
    sessions.register(study_db, "jay")
    sessions.record_answer(study_db, p, 0, chosen_class=2, rating=4)
    sessions.withdraw(study_db, "ivy")
    at = logged_in_researcher(monkeypatch)
    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["Withdrawn"] == "1" and metrics["Answers stored"] == "0"
    assert any("not pre-registered" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Freeze the design").click().run()
    assert any("consented already" in e.value for e in at.error)


def test_researcher_power_analysis_then_freeze(study_db, monkeypatch):
    import time

    from gradviz.study import preregistration

    at = logged_in_researcher(monkeypatch)
    next(n for n in at.number_input if n.label.startswith("Simulated")).set_value(20)
    next(n for n in at.number_input if n.label.startswith("Largest")).set_value(8)
    next(n for n in at.number_input if n.label.startswith("Effect")).set_value(3.0)
    next(b for b in at.button if b.label == "Run the power analysis").click().run()
    deadline = time.monotonic() + 120
    while not any("Participants needed" in s.value for s in at.success):
        assert time.monotonic() < deadline and not at.exception, at.exception
        time.sleep(0.5)
        at.run()
    needed = next(s.value for s in at.success if "Participants needed" in s.value)
    assert "80% power at α = 0.05" in needed and "prior" in needed
    planned = next(n for n in at.number_input if n.label == "Planned participants")
    planned_n = int(planned.proto.default)  # the form proposes the N the power analysis found
    assert planned_n == int(re.search(r"\*\*(\d+)\*\*", needed).group(1)) > 0
    next(b for b in at.button if b.label == "Freeze the design").click().run()
    assert not at.exception, at.exception
    record = preregistration.current(study_db)
    assert record is not None and record["planned_participants"] == planned_n
    assert any("Frozen" in s.value for s in at.success)
    assert not any("not pre-registered" in w.value for w in at.warning)
