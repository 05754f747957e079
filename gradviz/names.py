"""One rule for checking a hostile string against a pattern: the *whole* string must match.

`re.match(r"^…$")` is not that: `$` also matches just before a trailing newline, so "id\n" passed a check that
was meant to refuse it (a second enrolment of the same participant). Every validator in gradviz goes through
`whole_match`, which uses `fullmatch` and refuses anything that is not a `str`.
"""
from __future__ import annotations

import re


def whole_match(pattern: re.Pattern[str], value: object) -> bool:
    """Whether `value` is a string that `pattern` matches from its first character to its last."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None
