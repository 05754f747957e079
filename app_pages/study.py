"""The participant's page: consent, instructions, trials, thanks; withdrawal at any time. Conditions are
never shown. Answers are stored in the buttons' callbacks, so each answer costs one script run and one INSERT;
the participant's trial list and answered trials live in the session and are re-read only on a new session
(a refresh or another replica) or when another tab answered first."""
import time

import streamlit as st

from app_pages.study_common import (
    participant_id,
    participant_token,
    remember_participant,
    setting,
    stimulus,
    study_engine,
    study_openness,
)
from gradviz.data.classes import UnknownDataset, class_names
from gradviz.study import sessions
from gradviz.study.db import NotReady

DEFAULT_CONSENT = (
    "You are invited to take part in a research study about how people perceive slightly altered images of "
    "handwritten digits. You will see {n_images} images and answer one or two short questions about each. It "
    "takes about {minutes} minutes. We record your answers, response times and your participant id; nothing else. "
    "You may stop at any time, and you can withdraw at any point with the link at the bottom of each page: your "
    "answers are then deleted. Data are analysed anonymously.")
SECONDS_PER_IMAGE = 15
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
engine = study_engine()
try:
    NAMES = class_names(setting("active_dataset", "mnist"))
except UnknownDataset:  # a registered dataset since removed: the labels fall back to digits
    NAMES = class_names("mnist")
pid = participant_id()
state = st.session_state


def load_participant() -> sessions.Participant | None:
    """The participant and the set of answered trials, read from the database once per session. Only the holder of
    the participant's own link (its key) gets here; a registered id without its key is stopped."""
    if state.get("study_pid") != pid:
        found = sessions.authenticate(engine, pid, participant_token())
        if found is None:
            if sessions.find(engine, pid) is not None:
                in_use()
                st.stop()
            return None
        state.study_pid, state.study_participant = pid, found
        state.study_done = sessions.answered(engine, pid)
    return state.study_participant


def in_use() -> None:
    st.title("This study link is already in use")
    st.warning("Someone has already started the study with this participant id. If that was you, go back to the "
               "tab or link where you started: its address holds your personal key. Otherwise, please contact the "
               "researcher.")


def return_link(label: str) -> None:
    code = setting("decline_code")
    if code:
        st.link_button(label, PROLIFIC_COMPLETE + code)
    else:
        st.write("On Prolific, please return the study (the “Return” button on your Prolific page).")


def consent_text(n_images: int) -> str:
    """The researcher's consent text (or the default), with {n_images} and {minutes} filled from the design."""
    minutes = max(1, round(n_images * SECONDS_PER_IMAGE / 60))
    text = setting("consent_text") or DEFAULT_CONSENT
    return text.replace("{n_images}", str(n_images)).replace("{minutes}", str(minutes))


def closed() -> None:
    st.title("The study is not open yet")
    st.info("Thank you for your interest. The study is not open yet: nothing was stored. Please come back later.")
    return_link("Return the study on Prolific")


def consent() -> None:
    reason, n_images = study_openness()
    if reason is not None:  # said before anyone consents to anything
        closed()
        st.stop()
    st.title("Consent")
    st.markdown(consent_text(n_images))
    agree = st.checkbox("I have read the above and agree to take part.", key="agree")
    c1, c2 = st.columns(2)
    if c1.button("Start", type="primary", disabled=not agree, key="start"):
        try:
            registered = sessions.register(
                engine, pid, st.query_params.get("STUDY_ID"), st.query_params.get("SESSION_ID"),
                consent_version=setting("consent_version", "1"), user_agent=st.context.headers.get("User-Agent"))
        except NotReady:
            st.error("The study closed a moment ago. Please come back later.")
        except ValueError as exc:  # a malformed STUDY_ID or SESSION_ID in the link
            st.error(f"This study link is damaged: {exc}. Please open the link from Prolific again.")
        else:
            if registered.token is None:  # registered before, elsewhere: only the original link continues
                in_use()
                st.stop()
            remember_participant(pid, registered.token)
            st.rerun()
    if c2.button("I do not agree", key="decline"):
        st.info("Thank you. Nothing was stored. You can close this page.")
        return_link("Return the study on Prolific")
        st.stop()


def instructions() -> None:
    st.title("Instructions")
    st.markdown("Each image shows a handwritten digit that may have been altered. For every image:\n\n"
                "1. **Which digit does it show?** Click one of the ten buttons.\n"
                "2. **How much does it look like the digit we name?** 1 = not at all, 7 = perfectly.\n\n"
                "Some images show two versions side by side: pick the one that looks more like the named digit. "
                "There are no right or wrong answers except on a few obvious check images.")
    if st.button("Begin", type="primary", key="begin"):
        state[f"instructed_{pid}"] = True
        st.rerun()


def shown_at(trial_index: int) -> float:
    return state.setdefault(f"shown_{pid}_{trial_index}", time.time())


def store(participant: sessions.Participant, trial_index: int, **answer) -> None:
    """Callback: store one answer before the script runs, so the run that follows shows the next trial."""
    start = shown_at(trial_index)
    if sessions.record_answer(engine, participant, trial_index, shown_at=str(start),
                              rt_ms=int(1000 * (time.time() - start)), **answer):
        state.study_done.add(trial_index)
    else:  # answered already (another tab, or withdrawn): take the database's word for it
        state.study_done = sessions.answered(engine, pid)


def submit_rating(participant: sessions.Participant, trial_index: int) -> None:
    digit, rating = state.get(f"d_{trial_index}"), state.get(f"r_{trial_index}")
    if digit is None or rating is None:
        state.study_error = "Please answer both questions."
        return
    store(participant, trial_index, chosen_class=int(digit), rating=int(rating))


def rating_trial(participant: sessions.Participant, trial: dict, number: int, total: int) -> None:
    index = trial["trial_index"]
    s = stimulus(trial["stimulus_id"])
    asked = trial["target_class"] if trial["target_class"] is not None else s["true_class"]
    shown_at(index)
    st.progress(number / total, text=f"Image {number} of {total}")
    st.image(s["png"], width=280, output_format="PNG")
    with st.form(f"trial_{index}", enter_to_submit=False):
        st.segmented_control("Which digit does it show?", list(range(10)), key=f"d_{index}")
        st.radio(f"How much does it look like a **{NAMES[asked]}**?", list(range(1, 8)), index=None,
                 horizontal=True, key=f"r_{index}", captions=["not at all", "", "", "", "", "", "perfectly"])
        st.form_submit_button("Next", type="primary", on_click=submit_rating, args=(participant, index))
    if state.pop("study_error", None):
        st.error("Please answer both questions.")


def pair_trial(participant: sessions.Participant, trial: dict, number: int, total: int) -> None:
    left, right = (stimulus(trial[k]) for k in ("stimulus_id", "other_stimulus_id"))
    index = trial["trial_index"]
    shown_at(index)
    st.progress(number / total, text=f"Image {number} of {total}")
    st.markdown(f"### Which looks more like a **{NAMES[trial['target_class']]}**?")
    c1, c2 = st.columns(2)
    c1.image(left["png"], width=240, output_format="PNG")
    c2.image(right["png"], width=240, output_format="PNG")
    for column, choice, label in ((c1, 0, "This one (left)"), (c2, 1, "This one (right)")):
        column.button(label, key=f"pair_{index}_{choice}", on_click=store, args=(participant, index),
                      kwargs={"pair_choice": choice})


def confirm_withdrawal() -> None:
    """Shown in place of the trial: withdrawing deletes every answer, so it asks once more."""
    st.title("Withdraw from the study?")
    st.write("All your answers will be deleted and you cannot take part again. This cannot be undone.")
    c1, c2 = st.columns(2)
    if c1.button("Yes, withdraw and delete my answers", type="primary", key="withdraw_confirm"):
        state.study_withdrawn_count = sessions.withdraw(engine, pid)
        state.pop("study_pid", None)
        state.pop("study_confirm_withdraw", None)
        st.rerun()
    if c2.button("No, continue the study", key="withdraw_cancel"):
        state.pop("study_confirm_withdraw", None)
        st.rerun()


def withdraw_link() -> None:
    st.divider()
    if st.button("Withdraw from the study", type="tertiary", key="withdraw"):
        state.study_confirm_withdraw = True
        st.rerun()


def withdrawn() -> None:
    st.title("You have withdrawn")
    count = state.get("study_withdrawn_count")
    deleted = f"your {count} answer{'s' if count != 1 else ''} were deleted" if count is not None else \
        "your answers were deleted"
    st.info(f"You have withdrawn from this study and {deleted}. Nothing of your participation is analysed. "
            "You can close this page.")
    return_link("Return the study on Prolific")


def thanks() -> None:
    st.title("Thank you!")
    code = setting("completion_code")
    if code:
        st.success(f"Your completion code: **{code}**")
        st.link_button("Return to Prolific", PROLIFIC_COMPLETE + code)
    else:
        st.success("All your answers are saved. You can close this page.")


def invalid_link() -> None:
    st.title("This link is not valid")
    st.warning("The study link you followed has no valid participant id, so nothing was stored. Please return to "
               "Prolific and open the study from there again.")
    return_link("Return the study on Prolific")


if pid is None:
    invalid_link()
    st.stop()
participant = load_participant()
if participant is None:
    consent()
    st.stop()
if participant.withdrawn_at is not None:
    withdrawn()
    st.stop()
if state.get("study_confirm_withdraw"):
    confirm_withdrawal()
    st.stop()
trial = next((t for t in participant.trials if t["trial_index"] not in state.study_done), None)
if trial is None:
    if sessions.complete(engine, participant):  # the code appears only after every answer is committed
        thanks()
    else:  # the session's view was stale: re-read from the database
        state.study_done = sessions.answered(engine, pid)
        st.rerun()
    st.stop()
if trial["trial_index"] == 0 and not state.get(f"instructed_{pid}"):
    instructions()
    withdraw_link()
    st.stop()
number, total = trial["trial_index"] + 1, len(participant.trials)
(pair_trial if trial["kind"] == "pair" else rating_trial)(participant, trial, number, total)
withdraw_link()
