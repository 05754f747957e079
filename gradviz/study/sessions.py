"""A participant's life in the database: register once, answer each trial once, resume anywhere, complete."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sqlalchemy import Engine, delete, exists, func, literal, select

from gradviz.study.db import (
    NotReady,
    claim_slot,
    get_setting,
    insert_ignore,
    now,
    participants,
    responses,
    stimuli,
    withdrawals,
)
from gradviz.study.design import index_set, make_trials
from gradviz.study.stimulus_sets import load_set

PROLIFIC_ID = re.compile(r"^[0-9a-f]{24}$")
GENERIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def valid_participant_id(value: str | None) -> str | None:
    """A Prolific id (24 hex) or a plain id of letters, digits, _ and -; anything else is refused."""
    if value and (PROLIFIC_ID.match(value) or GENERIC_ID.match(value)):
        return value
    return None


@dataclass
class Participant:
    participant_id: str
    set_id: str
    list_index: int
    trials: list[dict]
    completed_at: str | None
    withdrawn_at: str | None = None


def active_set(engine: Engine) -> str:
    set_id = get_setting(engine, "active_set")
    if not set_id:
        raise NotReady("no stimulus set is active yet: the researcher must build one first")
    return set_id


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
    existing = find(engine, participant_id)
    if existing is not None:
        return existing
    set_id = active_set(engine)
    stimuli_rows = load_set(engine, set_id)
    _, conditions, _, _ = index_set(stimuli_rows)
    try:
        with engine.begin() as conn:
            slot = claim_slot(conn)
            list_index = (slot - 1) % len(conditions)
            trials = make_trials(stimuli_rows, list_index, participant_id)
            inserted = conn.execute(insert_ignore(participants, engine, ["participant_id"]), {
                "participant_id": participant_id, "study_id": study_id, "session_id": session_id,
                "set_id": set_id, "slot": slot, "list_index": list_index, "trials": json.dumps(trials),
                "consent_version": consent_version, "consented_at": now(), "completed_at": None,
                "user_agent": user_agent}).rowcount
            if inserted == 0:
                raise _AlreadyRegistered
    except _AlreadyRegistered:
        pass
    return find(engine, participant_id)


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
        return conn.execute(statement).rowcount == 1


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
