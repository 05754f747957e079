"""A participant's life in the database: register once, answer each trial once, resume anywhere, complete."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, exists, func, literal, select

from gradviz.names import whole_match
from gradviz.study.db import (
    NotReady,
    claim_slot,
    get_setting,
    insert_ignore,
    inserted,
    now,
    participant_tokens,
    participants,
    preregistrations,
    responses,
    stimuli,
    withdrawals,
)
from gradviz.study.deployment import study_only
from gradviz.study.design import index_set, make_trials
from gradviz.study.stimulus_sets import load_set

PROLIFIC_ID = re.compile(r"[0-9a-f]{24}")
GENERIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


def valid_participant_id(value: str | None) -> str | None:
    """A Prolific id (24 hex) or a plain id of letters, digits, _ and -, the whole string; anything else (a
    trailing newline included) is refused."""
    if whole_match(PROLIFIC_ID, value) or whole_match(GENERIC_ID, value):
        return value
    return None


def checked_link_id(name: str, value: str | None) -> str | None:
    """STUDY_ID or SESSION_ID from a participant's link: absent, or a plain id like a participant's; anything else
    (too long, a formula, markup) is refused with a message instead of being stored."""
    if value in (None, ""):
        return None
    if valid_participant_id(value) is None:
        raise ValueError(f"{name} in the study link is not a plain id of at most 64 letters, digits, '_' or '-'")
    return value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Participant:
    participant_id: str
    set_id: str
    list_index: int
    trials: list[dict]
    completed_at: str | None
    withdrawn_at: str | None = None
    token: str | None = None  # the key of the participant's own link; only the registration that made it has it


def active_set(engine: Engine) -> str:
    set_id = get_setting(engine, "active_set")
    if not set_id:
        raise NotReady("no stimulus set is active yet: the researcher must build one first")
    return set_id


OPEN_UNREGISTERED = "open_unregistered"  # setting: "1" lets participants start before the design is frozen
ANONYMOUS = "anonymous_enrolment"  # setting: "1" lets a visitor without a participant id take part


def anonymous_allowed(engine: Engine) -> bool:
    """Whether a visitor without an id may enrol (under a random id): the researcher's setting, by default on in
    the lab and off in study mode, where every participant should come with the recruiter's id and each
    anonymous visit would claim a Latin-square slot."""
    value = get_setting(engine, ANONYMOUS)
    return (not study_only()) if value is None else value == "1"


def closed_reason(engine: Engine) -> str | None:
    """Why participants cannot start now (for the researcher), or None when the study is open: a stimulus set
    must be active, and the design pre-registered unless the researcher explicitly opened it without."""
    if not get_setting(engine, "active_set"):
        return "no stimulus set is active"
    with engine.connect() as conn:
        frozen = conn.execute(select(func.count()).select_from(preregistrations)).scalar_one()
    if not frozen and get_setting(engine, OPEN_UNREGISTERED) != "1":
        return "the design is not pre-registered and the researcher has not opened the study without it"
    return None


def trials_per_participant(engine: Engine) -> int:
    """How many trials each participant of the active set answers (every list of the Latin square has as many)."""
    rows = load_set(engine, active_set(engine))
    return len(make_trials(rows, 0, "count"))


def find(engine: Engine, participant_id: str) -> Participant | None:
    query = (select(participants, withdrawals.c.withdrawn_at)
             .outerjoin(withdrawals, withdrawals.c.participant_id == participants.c.participant_id)
             .where(participants.c.participant_id == participant_id))
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Participant(row.participant_id, row.set_id, row.list_index, json.loads(row.trials), row.completed_at,
                       row.withdrawn_at)


class _AlreadyRegistered(Exception):
    """Raised inside the registration transaction to roll back its slot claim."""


def register(engine: Engine, participant_id: str, study_id: str | None = None, session_id: str | None = None,
             consent_version: str = "1", user_agent: str | None = None) -> Participant:
    """Record consent and materialise the trial list; a second call (refresh, second tab, another replica)
    returns the first. The slot claim and the insert share one transaction, and a lost race rolls the claim
    back, so the Latin-square allocation never skips a slot."""
    study_id, session_id = checked_link_id("STUDY_ID", study_id), checked_link_id("SESSION_ID", session_id)
    existing = find(engine, participant_id)
    if existing is not None:
        return existing
    set_id = active_set(engine)
    token = secrets.token_urlsafe(24)
    stimuli_rows = load_set(engine, set_id)
    _, conditions, _, _ = index_set(stimuli_rows)
    try:
        with engine.begin() as conn:
            slot = claim_slot(conn)
            list_index = (slot - 1) % len(conditions)
            trials = make_trials(stimuli_rows, list_index, participant_id)
            result = conn.execute(insert_ignore(participants, engine, ["participant_id"]), {
                "participant_id": participant_id, "study_id": study_id, "session_id": session_id,
                "set_id": set_id, "slot": slot, "list_index": list_index, "trials": json.dumps(trials),
                "consent_version": consent_version, "consented_at": now(), "completed_at": None,
                "user_agent": user_agent})
            if not inserted(result):
                raise _AlreadyRegistered
            conn.execute(participant_tokens.insert().values(participant_id=participant_id,
                                                             token_sha256=_digest(token)))
    except _AlreadyRegistered:
        return find(engine, participant_id)
    registered = find(engine, participant_id)
    registered.token = token
    return registered


def authenticate(engine: Engine, participant_id: str, token: str | None) -> Participant | None:
    """The participant, if `token` is the key their registration handed out (constant-time); else None.

    A participant id alone is public (it travels in Prolific's links): answering, withdrawing and reading the
    completion code all need the participant found here."""
    if not whole_match(TOKEN, token):
        return None
    with engine.connect() as conn:
        stored = conn.execute(select(participant_tokens.c.token_sha256)
                              .where(participant_tokens.c.participant_id == participant_id)).scalar()
    if stored is None or not hmac.compare_digest(stored, _digest(token)):
        return None
    found = find(engine, participant_id)
    if found is not None:
        found.token = token
    return found


def withdraw(engine: Engine, participant_id: str) -> int:
    """Delete every answer of a participant and record the withdrawal (kept so they are not enrolled again
    and the researcher can count withdrawals). Returns how many answers were deleted; idempotent."""
    with engine.begin() as conn:
        deleted = conn.execute(delete(responses).where(responses.c.participant_id == participant_id)).rowcount
        conn.execute(participants.update().where(participants.c.participant_id == participant_id)
                     .values(user_agent=None))
        conn.execute(insert_ignore(withdrawals, engine, ["participant_id"]),
                     {"participant_id": participant_id, "withdrawn_at": now(), "answers_deleted": deleted})
    return deleted


def answered(engine: Engine, participant_id: str) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(responses.c.trial_index)
                                .where(responses.c.participant_id == participant_id)).scalars())


def next_trial(engine: Engine, participant: Participant) -> dict | None:
    """The first unanswered trial, or None when every trial is answered."""
    done = answered(engine, participant.participant_id)
    return next((t for t in participant.trials if t["trial_index"] not in done), None)


def record_answer(engine: Engine, participant: Participant, trial_index: int, chosen_class: int | None = None,
                  rating: int | None = None, pair_choice: int | None = None, shown_at: str | None = None,
                  rt_ms: int | None = None) -> bool:
    """Store one answer; returns False if this trial was already answered (the first answer stands)."""
    trial = participant.trials[trial_index]
    if trial["kind"] == "pair":
        if pair_choice not in (0, 1):
            raise ValueError("a pairwise trial needs pair_choice 0 (left) or 1 (right)")
    elif chosen_class is None or rating is None:
        raise ValueError("a rating trial needs both the class and the 1–7 rating")
    row = {"participant_id": participant.participant_id, "trial_index": trial_index,
           "stimulus_id": trial["stimulus_id"], "other_stimulus_id": trial.get("other_stimulus_id"),
           "kind": trial["kind"], "chosen_class": chosen_class, "rating": rating, "pair_choice": pair_choice,
           "shown_at": shown_at, "answered_at": now(), "rt_ms": rt_ms}
    # One statement, one transaction: INSERT … SELECT the row unless the participant has withdrawn, ON CONFLICT
    # DO NOTHING. A withdrawal in another tab cannot be undone by a late answer.
    source = select(*(literal(v, responses.c[k].type).label(k) for k, v in row.items())).where(
        ~exists().where(withdrawals.c.participant_id == participant.participant_id))
    statement = insert_ignore(responses, engine, ["participant_id", "trial_index"]).from_select(list(row), source)
    with engine.begin() as conn:
        return inserted(conn.execute(statement))


def complete(engine: Engine, participant: Participant) -> bool:
    """Mark completion once every answer is stored; idempotent. Returns whether the participant is complete."""
    if next_trial(engine, participant) is not None:
        return False
    with engine.begin() as conn:
        conn.execute(participants.update().where(participants.c.participant_id == participant.participant_id)
                     .where(participants.c.completed_at.is_(None)).values(completed_at=now()))
    return True


def stimulus(engine: Engine, stimulus_id: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(stimuli).where(stimuli.c.stimulus_id == stimulus_id)).one()._mapping)


def progress(engine: Engine) -> dict:
    with engine.connect() as conn:
        started = conn.execute(select(func.count()).select_from(participants)).scalar_one()
        completed = conn.execute(select(func.count()).select_from(participants)
                                 .where(participants.c.completed_at.is_not(None))).scalar_one()
        answers = conn.execute(select(func.count()).select_from(responses)).scalar_one()
        withdrawn = conn.execute(select(func.count()).select_from(withdrawals)).scalar_one()
    return {"started": started, "completed": completed, "answers": answers, "withdrawn": withdrawn}
