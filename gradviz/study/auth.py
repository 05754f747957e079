"""Researcher password check: constant-time, optionally against an scrypt hash, with a global throttle."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time

MAX_FAILURES = 5
LOCKOUT_SECONDS = 60.0


def hash_password(password: str, salt: bytes | None = None) -> str:
    """'scrypt$<salt hex>$<hash hex>' for secrets.toml (`python -m gradviz study hash-password`)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(given: str, configured: str) -> bool:
    """Compare with a plain configured password or an scrypt hash, in constant time."""
    if configured.startswith("scrypt$"):
        _, salt, expected = configured.split("$")
        digest = hashlib.scrypt(given.encode(), salt=bytes.fromhex(salt), n=2 ** 14, r=8, p=1).hex()
        return hmac.compare_digest(digest, expected)
    return hmac.compare_digest(given.encode(), configured.encode())


def configured_password(secrets_section: dict | None = None) -> str | None:
    """GRADVIZ_RESEARCHER_PASSWORD, else [researcher] password in .streamlit/secrets.toml; None: page stays shut."""
    value = os.environ.get("GRADVIZ_RESEARCHER_PASSWORD") or (secrets_section or {}).get("password")
    return value or None


class Throttle:
    """Process-wide limit on failed logins: after MAX_FAILURES, every attempt is refused for a while."""

    def __init__(self, max_failures: int = MAX_FAILURES, lockout: float = LOCKOUT_SECONDS):
        self.max_failures, self.lockout = max_failures, lockout
        self.failures, self.locked_until = 0, 0.0
        self._lock = threading.Lock()

    def seconds_locked(self) -> float:
        with self._lock:
            return max(0.0, self.locked_until - time.monotonic())

    def attempt(self, given: str, configured: str) -> bool:
        if self.seconds_locked() > 0:
            return False
        ok = password_matches(given, configured)
        with self._lock:
            if ok:
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.max_failures:
                    self.locked_until = time.monotonic() + self.lockout
                    self.failures = 0
        return ok
