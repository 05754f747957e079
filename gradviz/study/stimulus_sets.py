"""Stored stimulus sets: insert, load, hash, export and activate them. No torch here: the participant
path reads stimuli through this module (building them, with the models, is gradviz.study.stimuli)."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

from sqlalchemy import Engine, func, select

from gradviz.study.db import (
    NotReady,
    StudyLocked,
    get_setting,
    insert_ignore,
    inserted,
    preregistrations,
    responses,
    set_setting,
    stimuli,
)


def store_stimuli(engine: Engine, rows: list[dict]) -> int:
    """Insert a stimulus set (idempotent: rebuilding the same set stores nothing twice); returns how many rows
    were new."""
    with engine.begin() as conn:
        return sum(inserted(conn.execute(insert_ignore(stimuli, engine, ["stimulus_id"]), row)) for row in rows)


def load_set(engine: Engine, set_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(stimuli).where(stimuli.c.set_id == set_id).order_by(stimuli.c.stimulus_id))
        return [dict(r._mapping) for r in rows]


def stimulus_sets(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(stimuli.c.set_id).distinct()).scalars())


def set_hash(rows: list[dict]) -> str:
    """sha256 over every stimulus of a set: id, condition, classes and the PNG bytes. Any change to any image
    or its labelling changes it, so a pre-registration can name exactly what participants saw."""
    digest = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r["stimulus_id"]):
        meta = [r["stimulus_id"], r["item_id"], r["condition"], r["kind"], r["true_class"], r["target_class"]]
        digest.update(json.dumps(meta).encode())
        digest.update(hashlib.sha256(r["png"]).digest())
    return digest.hexdigest()


def answers_stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(responses)).scalar_one()


def ensure_can_switch_to(engine: Engine, set_id: str) -> None:
    """Refuse a set other than the one answers or the pre-registration already name; called before building a
    set (minutes of attacks) as well as when activating it."""
    with engine.connect() as conn:
        registered = conn.execute(select(preregistrations.c.set_id)).scalars().first()
    if registered and registered != set_id:
        raise StudyLocked(f"this study is pre-registered with stimulus set {registered}; another set is a new "
                          "study. Start it with a new database (GRADVIZ_DB_URL).")
    current = get_setting(engine, "active_set")
    if current and current != set_id and answers_stored(engine):
        raise StudyLocked(f"answers already exist for stimulus set {current}; changing the stimuli now would "
                          "mix two designs in one study. Start a new study with a new database "
                          "(GRADVIZ_DB_URL) instead.")


def activate_set(engine: Engine, set_id: str, dataset: str) -> None:
    """Make a stored set the one new participants see. Refused once answers exist for another set: the
    answers and the pre-registration name one stimulus set; a new set is a new study (a new database)."""
    if not load_set(engine, set_id):
        raise NotReady(f"no stimulus set {set_id!r} is stored")
    ensure_can_switch_to(engine, set_id)
    set_setting(engine, "active_set", set_id)
    set_setting(engine, "active_dataset", dataset)


def stimulus_zip(engine: Engine, set_id: str, extra: dict[str, str] | None = None) -> bytes:
    """The whole set as a zip: one PNG per stimulus, a manifest with every provenance record, and any extra
    text files (the pre-registration)."""
    buffer = io.BytesIO()
    rows = load_set(engine, set_id)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for r in rows:
            z.writestr(f"stimuli/{r['stimulus_id']}.png", r["png"])
        manifest = [{k: v for k, v in r.items() if k != "png"} for r in rows]
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return buffer.getvalue()
