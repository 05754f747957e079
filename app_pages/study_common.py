"""Study helpers for the pages: the shared engine and the participant's identity."""
import secrets

import streamlit as st

from gradviz.study.db import default_url, engine_for
from gradviz.study.sessions import valid_participant_id


@st.cache_resource
def _engine(url: str):
    return engine_for(url)


def study_engine():
    """One engine per database URL per process (GRADVIZ_DB_URL or the default SQLite file)."""
    return _engine(default_url())


def participant_id() -> str:
    """From ?PROLIFIC_PID= or ?pid=, else a random id; re-asserted into the URL so a refresh resumes."""
    qp = st.query_params
    pid = valid_participant_id(qp.get("PROLIFIC_PID")) or valid_participant_id(qp.get("pid"))
    pid = pid or st.session_state.get("participant_id") or f"anon-{secrets.token_hex(8)}"
    st.session_state["participant_id"] = pid
    key = "PROLIFIC_PID" if qp.get("PROLIFIC_PID") == pid else "pid"
    if qp.get(key) != pid:
        qp[key] = pid
    return pid
