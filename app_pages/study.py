"""The participant's page: consent, instructions, trials, thanks. Conditions are never shown."""
import time

import streamlit as st

from app_pages.study_common import participant_id, study_engine
from gradviz.datasets import CLASS_NAMES
from gradviz.study import sessions
from gradviz.study.db import get_setting

DEFAULT_CONSENT = (
    "You are invited to take part in a research study about how people perceive slightly altered images of "
    "handwritten digits. You will see about 25 images and answer two short questions about each. It takes about "
    "5 minutes. We record your answers, response times and your participant id; nothing else. You may stop at any "
    "time. Data are analysed anonymously.")
engine = study_engine()
NAMES = CLASS_NAMES.get(get_setting(engine, "active_dataset", "mnist"), CLASS_NAMES["mnist"])
pid = participant_id()
participant = sessions.find(engine, pid)


def consent() -> None:
    st.title("Consent")
    st.markdown(get_setting(engine, "consent_text", DEFAULT_CONSENT))
    agree = st.checkbox("I have read the above and agree to take part.", key="agree")
    c1, c2 = st.columns(2)
    if c1.button("Start", type="primary", disabled=not agree, key="start"):
        try:
            sessions.register(engine, pid, st.query_params.get("STUDY_ID"), st.query_params.get("SESSION_ID"),
                              consent_version=get_setting(engine, "consent_version", "1"),
                              user_agent=st.context.headers.get("User-Agent"))
        except LookupError:
            st.error("The study is not open yet. Please come back later.")
            st.stop()
        st.rerun()
    if c2.button("I do not agree", key="decline"):
        st.info("Thank you. Nothing was stored. You can close this page (on Prolific: return the study).")
        st.stop()


def instructions() -> None:
    st.title("Instructions")
    st.markdown("Each image shows a handwritten digit that may have been altered. For every image:\n\n"
                "1. **Which digit does it show?** Click one of the ten buttons.\n"
                "2. **How much does it look like the digit we name?** 1 = not at all, 7 = perfectly.\n\n"
                "Some images show two versions side by side: pick the one that looks more like the named digit. "
                "There are no right or wrong answers except on a few obvious check images.")
    if st.button("Begin", type="primary", key="begin"):
        st.session_state[f"instructed_{pid}"] = True
        st.rerun()


def shown_at(trial_index: int) -> float:
    return st.session_state.setdefault(f"shown_{pid}_{trial_index}", time.time())


def rating_trial(trial: dict, number: int, total: int) -> None:
    s = sessions.stimulus(engine, trial["stimulus_id"])
    asked = trial["target_class"] if trial["target_class"] is not None else s["true_class"]
    start = shown_at(trial["trial_index"])
    st.progress(number / total, text=f"Image {number} of {total}")
    st.image(s["png"], width=280, output_format="PNG")
    with st.form(f"trial_{trial['trial_index']}", enter_to_submit=False):
        digit = st.segmented_control("Which digit does it show?", list(range(10)), key=f"d_{trial['trial_index']}")
        rating = st.radio(f"How much does it look like a **{NAMES[asked]}**?", list(range(1, 8)), index=None,
                          horizontal=True, key=f"r_{trial['trial_index']}",
                          captions=["not at all", "", "", "", "", "", "perfectly"])
        if st.form_submit_button("Next", type="primary"):
            if digit is None or rating is None:
                st.error("Please answer both questions.")
                st.stop()
            sessions.record_answer(engine, participant, trial["trial_index"], chosen_class=int(digit),
                                   rating=int(rating), shown_at=str(start), rt_ms=int(1000 * (time.time() - start)))
            st.rerun()


def pair_trial(trial: dict, number: int, total: int) -> None:
    left, right = (sessions.stimulus(engine, trial[k]) for k in ("stimulus_id", "other_stimulus_id"))
    start = shown_at(trial["trial_index"])
    st.progress(number / total, text=f"Image {number} of {total}")
    st.markdown(f"### Which looks more like a **{NAMES[trial['target_class']]}**?")
    c1, c2 = st.columns(2)
    c1.image(left["png"], width=240, output_format="PNG")
    c2.image(right["png"], width=240, output_format="PNG")
    for column, choice, label in ((c1, 0, "This one (left)"), (c2, 1, "This one (right)")):
        if column.button(label, key=f"pair_{trial['trial_index']}_{choice}"):
            sessions.record_answer(engine, participant, trial["trial_index"], pair_choice=choice, shown_at=str(start),
                                   rt_ms=int(1000 * (time.time() - start)))
            st.rerun()


def thanks() -> None:
    st.title("Thank you!")
    code = get_setting(engine, "completion_code")
    if code:
        st.success(f"Your completion code: **{code}**")
        st.link_button("Return to Prolific", f"https://app.prolific.com/submissions/complete?cc={code}")
    else:
        st.success("All your answers are saved. You can close this page.")


if participant is None:
    consent()
    st.stop()
trial = sessions.next_trial(engine, participant)
if trial is None:
    if sessions.complete(engine, participant):  # the code appears only after every answer is committed
        thanks()
    st.stop()
if trial["trial_index"] == 0 and not st.session_state.get(f"instructed_{pid}"):
    instructions()
    st.stop()
number, total = trial["trial_index"] + 1, len(participant.trials)
(pair_trial if trial["kind"] == "pair" else rating_trial)(trial, number, total)
