"""Study helpers for the pages: the shared engine, cached settings and stimuli, the participant's identity.

The participant path imports no torch and loads no model; what it reads repeatedly (settings, stimulus
PNGs) is cached per process, so an answer costs one INSERT.
"""
import secrets

import streamlit as st

from gradviz.study import sessions
from gradviz.study.db import default_url, engine_for, get_setting
from gradviz.study.sessions import valid_participant_id


@st.cache_resource
def _engine(url: str):
    return engine_for(url)


def study_engine():
    """One engine per database URL per process (GRADVIZ_DB_URL or the default SQLite file)."""
    return _engine(default_url())


@st.cache_data(ttl=15, show_spinner=False)
def _setting(url: str, key: str, default: str | None) -> str | None:
    return get_setting(_engine(url), key, default)


def setting(key: str, default: str | None = None) -> str | None:
    """A study setting, re-read from the database at most every 15 s per process (a researcher's edit of the
    consent text or completion code reaches participants within that)."""
    return _setting(default_url(), key, default)


@st.cache_data(max_entries=20_000, show_spinner=False)
def _stimulus(url: str, stimulus_id: str) -> dict:
    row = sessions.stimulus(_engine(url), stimulus_id)
    return {k: row[k] for k in ("stimulus_id", "png", "true_class", "target_class")}


def stimulus(stimulus_id: str) -> dict:
    """A stimulus's PNG and classes; stimuli never change once stored, so each is read once per process."""
    return _stimulus(default_url(), stimulus_id)


ID_PARAMS = ("PROLIFIC_PID", "pid")


def participant_id() -> str | None:
    """From ?PROLIFIC_PID= or ?pid=; None when the link carries an id that is not valid, or none while anonymous
    enrolment is off (the page then says the link is not valid: never a silent new id). Without an id and with
    anonymous enrolment on: a random id kept for this browser session (not yet in the URL: a visitor who has not
    consented is nobody, and a researcher looking at the page is not turned into one)."""
    qp = st.query_params
    given = [qp.get(key) for key in ID_PARAMS if key in qp]
    if given:
        return valid_participant_id(given[0])
    if not sessions.anonymous_allowed(study_engine()):
        return None
    pid = st.session_state.get("participant_id") or f"anon-{secrets.token_hex(8)}"
    st.session_state["participant_id"] = pid
    return pid


def participant_token() -> str | None:
    """The key of the participant's own link: this session's, else ?t= of the URL (a refresh, another replica)."""
    return st.session_state.get("participant_token") or st.query_params.get("t")


def remember_participant(pid: str, token: str) -> None:
    """After consent: the id and its key go into the URL, so a refresh or a reconnect to another replica resumes."""
    st.session_state["participant_token"] = token
    qp = st.query_params
    qp["PROLIFIC_PID" if qp.get("PROLIFIC_PID") == pid else "pid"] = pid
    qp["t"] = token


@st.cache_data(ttl=15, show_spinner=False)
def _openness(url: str) -> tuple[str | None, int]:
    engine = _engine(url)
    reason = sessions.closed_reason(engine)
    return reason, (0 if reason else sessions.trials_per_participant(engine))


def study_openness() -> tuple[str | None, int]:
    """(why the study is closed or None, trials per participant), re-read at most every 15 s per process."""
    return _openness(default_url())
