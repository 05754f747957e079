"""Researcher login: an scrypt hash only, every attempt counted in the database before the password is checked.

The study runs on the public internet behind several replicas, so the limits live in the database that all
replicas share, and each attempt reserves its slot atomically (a compare-and-swap on the counter row) before the
slow scrypt step: N parallel guesses cannot all pass a check that said "4 failures so far". Each client gets
FREE_TRIES attempts, then waits BACKOFF_BASE · 2^k seconds (k further failures, at most BACKOFF_MAX); all
clients together get at most GLOBAL_CEILING checks a minute, a ceiling on the work a botnet can cause that
never locks the researcher out for long. A logged-in session ends on logout or after IDLE_EXPIRY of inactivity.
"""
from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from gradviz.study.db import login_throttle

FREE_TRIES = 5
BACKOFF_BASE = 2.0
BACKOFF_MAX = 900.0
GLOBAL_CEILING = 30  # password checks per WINDOW across every client and replica
WINDOW = 60.0
IDLE_EXPIRY = 1800.0  # a logged-in researcher session idle this long must log in again
MIN_LENGTH = 12  # OWASP ASVS level 1: at least 12 characters
GLOBAL = "*all clients*"
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


class PasswordError(ValueError):
    """A password or configured hash that gradviz will not use; the message says what to do instead."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """'scrypt$<salt hex>$<hash hex>' for secrets.toml or GRADVIZ_RESEARCHER_PASSWORD (`study hash-password`)."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the researcher password needs at least {MIN_LENGTH} characters")
    salt = salt or secrets.token_bytes(16)
    return f"scrypt${salt.hex()}${hashlib.scrypt(password.encode(), salt=salt, **SCRYPT).hex()}"


def read_new_password(stream=None) -> str:
    """The password to hash: typed twice at a prompt, or one line on standard input (never a command-line
    argument, which the shell history and the process list would keep)."""
    stream = stream or sys.stdin
    if stream.isatty():
        first, second = getpass.getpass("New researcher password: "), getpass.getpass("Again: ")
        if first != second:
            raise PasswordError("the two passwords differ")
        return first
    return stream.readline().rstrip("\n")


def checked_hash(configured: str) -> str:
    """The configured value if it is an scrypt hash gradviz made; a plaintext or empty value is refused."""
    parts = configured.split("$")
    if len(parts) != 3 or parts[0] != "scrypt" or len(parts[1]) != 32 or len(parts[2]) != 128:
        raise PasswordError("the configured researcher password is not an scrypt hash; make one with "
                            "`python -m gradviz study hash-password` and set that instead (plaintext is refused)")
    try:
        bytes.fromhex(parts[1] + parts[2])
    except ValueError as exc:
        raise PasswordError("the configured researcher password hash is damaged") from exc
    return configured


def password_matches(given: str, configured: str) -> bool:
    """Compare with the configured scrypt hash in constant time."""
    _, salt, expected = checked_hash(configured).split("$")
    digest = hashlib.scrypt(given.encode(), salt=bytes.fromhex(salt), **SCRYPT).hex()
    return hmac.compare_digest(digest, expected)


def configured_password(secrets_section: dict | None = None) -> str | None:
    """GRADVIZ_RESEARCHER_PASSWORD, else [researcher] password in .streamlit/secrets.toml; None: page stays shut."""
    value = os.environ.get("GRADVIZ_RESEARCHER_PASSWORD") or (secrets_section or {}).get("password")
    return value or None


@dataclass(frozen=True)
class Attempt:
    """The outcome of one login attempt; `wait` is how long the client must wait before the next one counts."""

    ok: bool
    wait: float = 0.0
    refused: bool = False  # not checked at all: too many attempts


def login(engine: Engine, client: str, given: str, configured: str, now: float | None = None) -> Attempt:
    """Count the attempt (globally and for `client`), then, if it may go ahead, check the password."""
    now = time.time() if now is None else now
    checked_hash(configured)
    client = client[:64] or "unknown"
    if not _reserve(engine, client, lambda row: _client_step(row, now)):
        return Attempt(False, _client_wait(engine, client, now), refused=True)
    if not _reserve(engine, GLOBAL, lambda row: _global_step(row, now)):  # counts only checks that would run
        return Attempt(False, _global_wait(engine, now), refused=True)
    if password_matches(given, configured):
        with engine.begin() as conn:
            conn.execute(update(login_throttle).where(login_throttle.c.client == client)
                         .values(failures=0, blocked_until=0.0))
        return Attempt(True)
    return Attempt(False, _client_wait(engine, client, now))


def _global_step(row, now: float) -> dict | None:
    if now - row.window_start >= WINDOW:
        return {"failures": 1, "window_start": now}
    return None if row.failures >= GLOBAL_CEILING else {"failures": row.failures + 1}


def _client_step(row, now: float) -> dict | None:
    if row.failures >= FREE_TRIES and row.blocked_until > now:
        return None
    failures = row.failures + 1
    wait = 0.0 if failures < FREE_TRIES else min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - FREE_TRIES))
    return {"failures": failures, "blocked_until": now + wait}


def _reserve(engine: Engine, client: str, step: Callable[[object], dict | None]) -> bool:
    """Apply `step` to the client's counter row as a compare-and-swap: True if the attempt may go ahead.

    The update only lands if the row is still what `step` saw, so concurrent attempts (threads, replicas) are
    counted one after the other; a loser reads the row again and decides again."""
    table = login_throttle
    for _ in range(1000):
        with engine.begin() as conn:
            row = conn.execute(select(table).where(table.c.client == client)).first()
        if row is None:
            try:
                with engine.begin() as conn:
                    conn.execute(insert(table).values(client=client, failures=0, blocked_until=0.0, window_start=0.0))
            except IntegrityError:
                pass  # another attempt created it first
            continue
        values = step(row)
        if values is None:
            return False
        with engine.begin() as conn:
            swapped = conn.execute(update(table).where(
                table.c.client == client, table.c.failures == row.failures,
                table.c.blocked_until == row.blocked_until, table.c.window_start == row.window_start,
            ).values(**values)).rowcount
        if swapped:
            return True
    return False  # contention beyond reason: refuse rather than check unthrottled


def _stored(engine: Engine, client: str, column: str) -> float:
    with engine.begin() as conn:
        value = conn.execute(select(login_throttle.c[column]).where(login_throttle.c.client == client)).scalar()
    return value or 0.0


def _client_wait(engine: Engine, client: str, now: float) -> float:
    return max(0.0, _stored(engine, client, "blocked_until") - now)


def _global_wait(engine: Engine, now: float) -> float:
    return max(0.0, _stored(engine, GLOBAL, "window_start") + WINDOW - now)


def session_expired(last_seen: float | None, now: float | None = None) -> bool:
    """Whether a logged-in researcher session has been idle too long (or never logged in)."""
    now = time.time() if now is None else now
    return last_seen is None or now - last_seen > IDLE_EXPIRY
