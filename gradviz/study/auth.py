"""Researcher login: an scrypt hash only, every attempt counted in the database before the password is checked.

The study runs on the public internet behind several replicas, so the limits live in the database that all
replicas share, and each attempt reserves its slot atomically (a compare-and-swap on the counter row) before the
slow scrypt step: N parallel guesses cannot all pass a check that said "4 failures so far".

Two budgets, kept apart so that a stranger can never spend the researcher's:
- each client gets FREE_TRIES attempts, then waits BACKOFF_BASE · 2^k seconds (k further failures, at most
  BACKOFF_MAX); only that client's own attempts count against it;
- all clients together get at most GLOBAL_CEILING checks a minute (a bound on the scrypt work a botnet can
  cause), but only clients *without* a recent success are held by it: a client that logged in within
  TRUST_PERIOD, or one that gives the recovery code printed by `study hash-password`, is exempt. A refusal by the
  ceiling gives the client's attempt back, so the ceiling never pushes anyone into backoff.
An attacker with many addresses can fill the ceiling, but then the researcher still gets in from an address they
used before, or from any address with the recovery code. A logged-in session ends on logout or after IDLE_EXPIRY
of inactivity.
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

from gradviz.study.db import insert_ignore, inserted, login_throttle, trusted_clients

FREE_TRIES = 5
BACKOFF_BASE = 2.0
BACKOFF_MAX = 900.0
GLOBAL_CEILING = 30  # password checks per WINDOW across every client and replica
WINDOW = 60.0
TRUST_PERIOD = 30 * 86400.0  # a client that logged in this recently is not held by the global ceiling
IDLE_EXPIRY = 1800.0  # a logged-in researcher session idle this long must log in again
MIN_LENGTH = 12  # OWASP ASVS level 1: at least 12 characters
GLOBAL = "*all clients*"
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


class PasswordError(ValueError):
    """A password or configured hash that gradviz will not use; the message says what to do instead."""


def hash_password(password: str, salt: bytes | None = None, recovery_code: str | None = None) -> str:
    """'scrypt$<salt hex>$<hash hex>[$<recovery code sha256>]' for secrets.toml or GRADVIZ_RESEARCHER_PASSWORD
    (`study hash-password`, which also makes the recovery code with `new_recovery_code`)."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the researcher password needs at least {MIN_LENGTH} characters")
    salt = salt or secrets.token_bytes(16)
    hashed = f"scrypt${salt.hex()}${hashlib.scrypt(password.encode(), salt=salt, **SCRYPT).hex()}"
    return hashed if recovery_code is None else f"{hashed}${_code_digest(recovery_code)}"


def new_recovery_code() -> str:
    """160 random bits as eight groups of letters and digits: too many to guess, so a plain sha256 (cheap, no lever
    for a flood of work) is enough to check it."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(32))
    return "-".join(raw[i:i + 4] for i in range(0, 32, 4))


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def recovery_matches(given: str | None, configured: str) -> bool:
    """Whether `given` is the recovery code whose sha256 the configured hash carries (constant time)."""
    parts = checked_hash(configured).split("$")
    return bool(given) and len(parts) == 4 and hmac.compare_digest(_code_digest(given), parts[3])


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
    """The configured value if it is an scrypt hash gradviz made (with or without a recovery code's sha256); a
    plaintext or empty value is refused."""
    parts = configured.split("$")
    lengths = [len(part) for part in parts[1:]]
    if parts[0] != "scrypt" or lengths not in ([32, 128], [32, 128, 64]):
        raise PasswordError("the configured researcher password is not an scrypt hash; make one with "
                            "`python -m gradviz study hash-password` and set that instead (plaintext is refused)")
    try:
        bytes.fromhex("".join(parts[1:]))
    except ValueError as exc:
        raise PasswordError("the configured researcher password hash is damaged") from exc
    return configured


def password_matches(given: str, configured: str) -> bool:
    """Compare with the configured scrypt hash in constant time."""
    _, salt, expected, *_ = checked_hash(configured).split("$")
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
    ceiling: bool = False  # refused by the global ceiling (the client's own budget is untouched)


def login(engine: Engine, client: str, given: str, configured: str, now: float | None = None,
          recovery_code: str | None = None) -> Attempt:
    """Count the attempt against `client`'s own budget, then against the global ceiling unless the client is
    exempt (a recent success, or the recovery code), then check the password."""
    now = time.time() if now is None else now
    checked_hash(configured)
    client = client[:64] or "unknown"
    if not _reserve(engine, client, lambda row: _client_step(row, now)):
        return Attempt(False, _client_wait(engine, client, now), refused=True)
    exempt = _recently_trusted(engine, client, now) or recovery_matches(recovery_code, configured)
    if not exempt and not _reserve(engine, GLOBAL, lambda row: _global_step(row, now)):
        _reserve(engine, client, lambda row: _refund_step(row, now))  # the ceiling never spends a client's budget
        return Attempt(False, _global_wait(engine, now), refused=True, ceiling=True)
    if password_matches(given, configured):
        _remember_success(engine, client, now)
        return Attempt(True)
    return Attempt(False, _client_wait(engine, client, now))


def _recently_trusted(engine: Engine, client: str, now: float) -> bool:
    with engine.connect() as conn:
        last = conn.execute(select(trusted_clients.c.last_success).where(trusted_clients.c.client == client)).scalar()
    return last is not None and now - last < TRUST_PERIOD


def _remember_success(engine: Engine, client: str, now: float) -> None:
    """Reset the client's count and trust it for TRUST_PERIOD (one row per client: inserted if new, else its time
    moved on, so two logins at once from one client never race on the key)."""
    with engine.begin() as conn:
        conn.execute(update(login_throttle).where(login_throttle.c.client == client)
                     .values(failures=0, blocked_until=0.0))
        if not inserted(conn.execute(insert_ignore(trusted_clients, conn, ["client"]).values(client=client,
                                                                                             last_success=now))):
            conn.execute(update(trusted_clients).where(trusted_clients.c.client == client).values(last_success=now))


def _refund_step(row, now: float) -> dict:
    """Undo one `_client_step` that was allowed to go ahead (so the client was not blocked before it)."""
    return {"failures": max(row.failures - 1, 0), "blocked_until": min(row.blocked_until, now)}


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
