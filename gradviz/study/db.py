"""Study storage: SQLAlchemy 2 Core tables on SQLite (default, WAL) or PostgreSQL, chosen by URL alone.

Every write is one short transaction; uniqueness is enforced by the database (primary keys and
ON CONFLICT DO NOTHING), never by read-then-write in Python, so concurrent sessions cannot duplicate.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import (
    CheckConstraint,
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)

from gradviz.paths import study_db_path


class NotReady(LookupError):
    """The study lacks something a step needs (an active stimulus set): the researcher must act first."""


class StudyLocked(PermissionError):
    """A change refused because data or a pre-registration already depend on the current design."""


SCHEMA_VERSION = 4  # 2: withdrawals, preregistrations; 3: login_throttle, participant_tokens; 4: trusted_clients
# (new tables only: create_all migrates)
metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, primary_key=True),
                       Column("applied_at", String(40), nullable=False))
settings = Table("settings", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
login_throttle = Table(  # researcher login attempts, shared by every replica (gradviz.study.auth)
    "login_throttle", metadata,
    Column("client", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("blocked_until", Float, nullable=False),
    Column("window_start", Float, nullable=False),
)
trusted_clients = Table(  # the last successful researcher login of each client (gradviz.study.auth)
    "trusted_clients", metadata,
    Column("client", String(64), primary_key=True),
    Column("last_success", Float, nullable=False),
)
counters = Table("counters", metadata, Column("name", String(64), primary_key=True),
                 Column("value", Integer, nullable=False))
stimuli = Table(
    "stimuli", metadata,
    Column("stimulus_id", String(64), primary_key=True),
    Column("set_id", String(64), nullable=False, index=True),
    Column("item_id", String(64), nullable=False),
    Column("condition", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # "adversarial" or "attention"
    Column("source_model", String(128)),
    Column("source_sha256", String(64)),
    Column("attack", String(16)),
    Column("eps", Float),
    Column("true_class", Integer, nullable=False),
    Column("target_class", Integer),
    Column("l2", Float),
    Column("ssim", Float),
    Column("png", LargeBinary, nullable=False),
    Column("provenance", Text, nullable=False),
)
participants = Table(
    "participants", metadata,
    Column("participant_id", String(64), primary_key=True),
    Column("study_id", String(64)),
    Column("session_id", String(64)),
    Column("set_id", String(64), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("list_index", Integer, nullable=False),
    Column("trials", Text, nullable=False),
    Column("consent_version", String(64)),
    Column("consented_at", String(40), nullable=False),
    Column("completed_at", String(40)),
    Column("user_agent", Text),
)
participant_tokens = Table(  # the key of each participant's own link: only its sha256 is stored
    "participant_tokens", metadata,
    Column("participant_id", String(64), primary_key=True),
    Column("token_sha256", String(64), nullable=False),
)
responses = Table(
    "responses", metadata,
    Column("participant_id", String(64), primary_key=True),
    Column("trial_index", Integer, primary_key=True),
    Column("stimulus_id", String(64), nullable=False),
    Column("other_stimulus_id", String(64)),
    Column("kind", String(16), nullable=False),
    Column("chosen_class", Integer),
    Column("rating", Integer),
    Column("pair_choice", Integer),
    Column("shown_at", String(40)),
    Column("answered_at", String(40), nullable=False),
    Column("rt_ms", Integer),
    CheckConstraint("rating IS NULL OR (rating BETWEEN 1 AND 7)", name="rating_range"),
    CheckConstraint("chosen_class IS NULL OR (chosen_class BETWEEN 0 AND 9)", name="class_range"),
)

withdrawals = Table(
    "withdrawals", metadata,
    Column("participant_id", String(64), primary_key=True),
    Column("withdrawn_at", String(40), nullable=False),
    Column("answers_deleted", Integer, nullable=False),
)
preregistrations = Table(
    "preregistrations", metadata,
    Column("record_sha256", String(64), primary_key=True),
    Column("frozen_at", String(40), nullable=False),
    Column("set_id", String(64), nullable=False),
    Column("record", Text, nullable=False),  # canonical JSON; its sha256 is the key
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def default_url() -> str:
    """GRADVIZ_DB_URL, else a SQLite file in the gradviz data folder."""
    if os.environ.get("GRADVIZ_DB_URL"):
        return os.environ["GRADVIZ_DB_URL"]
    path = study_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process; fsync at checkpoints
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine whose options follow from the URL: SQLite gets WAL and a busy timeout, servers a pool."""
    url = url or default_url()
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            raise ValueError("an in-memory SQLite database would lose the study; give a file path")
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
    create_schema(engine)
    return engine


@lru_cache(maxsize=8)
def engine_for(url: str | None = None) -> Engine:
    """One engine per URL per process."""
    return make_engine(url)


def create_schema(engine: Engine) -> None:
    """Create the tables on first start and record the schema version; refuse a newer schema."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        found = conn.execute(select(schema_version.c.version)).scalars().all()
        if found and max(found) > SCHEMA_VERSION:
            raise RuntimeError(f"database schema v{max(found)} is newer than this gradviz (v{SCHEMA_VERSION})")
        if not found or max(found) < SCHEMA_VERSION:
            conn.execute(insert_ignore(schema_version, engine, ["version"]),
                         {"version": SCHEMA_VERSION, "applied_at": now()})
            conn.execute(insert_ignore(counters, engine, ["name"]), {"name": "slot", "value": 0})


def _dialect_insert(table: Table, engine_or_conn):
    if engine_or_conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def insert_ignore(table: Table, engine_or_conn, keys: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING the keys, in the connection's dialect (SQLite ≥ 3.35 and
    PostgreSQL alike). Whether a row went in is whether the result has a row (`inserted`): the driver's rowcount
    is no guide, since SQLAlchemy 2.1 with psycopg 3 reports -1 for these statements."""
    statement = _dialect_insert(table, engine_or_conn).on_conflict_do_nothing(index_elements=keys)
    return statement.returning(*(table.c[k] for k in keys))


def inserted(result) -> bool:
    """Whether the `insert_ignore` statement that gave `result` stored its row."""
    return result.first() is not None


def get_setting(engine: Engine, key: str, default: str | None = None) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()
    return default if value is None else value


def set_setting(engine: Engine, key: str, value: str) -> None:
    statement = _dialect_insert(settings, engine)
    with engine.begin() as conn:
        conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": statement.excluded.value}),
                     {"key": key, "value": value})


def claim_slot(conn) -> int:
    """Atomically take the next allocation slot (UPDATE … RETURNING: no count-then-insert race)."""
    return conn.execute(text("UPDATE counters SET value = value + 1 WHERE name = 'slot' RETURNING value")).scalar_one()

