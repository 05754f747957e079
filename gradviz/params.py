"""Settings of registry entries (attacks, saliency methods): their kinds and ranges, and checking given values.

A page builds one control per `Param`, the CLI parses `ENTRY.SETTING=VALUE`, and both end in `checked_settings`,
so a value out of range is refused with the same one-line message everywhere.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KINDS = ("float", "int", "bool", "choice")


@dataclass(frozen=True)
class Param:
    """One setting of a registry entry, with what a form needs to offer it and what a value must satisfy."""

    name: str
    label: str
    default: float
    low: float = 0.0
    high: float = 1.0
    step: float = 0.01
    kind: str = "float"  # one of KINDS
    choices: tuple[float, ...] = ()
    help: str = ""

    def check(self, owner: str, value: float | int | bool) -> float | int | bool:
        """The value in its kind, or a ValueError that names the owner, the setting and the allowed range."""
        where = f"{owner}: {self.name}"
        if self.kind == "bool":
            if value not in (0, 1, True, False):
                raise ValueError(f"{where} is on or off (1 or 0); got {value!r}")
            return bool(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number; got {value!r}") from None
        if self.kind == "choice":
            if number not in self.choices:
                raise ValueError(f"{where} must be one of {', '.join(f'{c:g}' for c in self.choices)}; got {value!r}")
            return number
        if self.kind == "int" and number != int(number):
            raise ValueError(f"{where} must be a whole number; got {value!r}")
        if not self.low <= number <= self.high:
            raise ValueError(f"{where} must be between {self.low:g} and {self.high:g}; got {value!r}")
        return int(number) if self.kind == "int" else number


def checked_settings(owner: str, params: tuple[Param, ...], given: Mapping[str, float] | None = None) -> dict:
    """Defaults overridden by `given`, every value checked; an unknown setting is an error, not ignored."""
    given = dict(given or {})
    known = {p.name: p for p in params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        offered = ", ".join(known) or "none"
        raise ValueError(f"{owner} has no setting {', '.join(unknown)}; its settings: {offered}")
    return {name: p.check(owner, given.get(name, p.default)) for name, p in known.items()}


def parse_settings(items: list[str] | None, flag: str, example: str = "NAME.SETTING=VALUE") -> dict[str, dict]:
    """`["mifgsm.decay=0.5", "pgd.steps=40"]` as {entry: {setting: value}}, values still unchecked strings."""
    out: dict[str, dict] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        entry, dot, name = key.partition(".")
        if not (sep and dot and entry and name):
            raise ValueError(f"{flag} {item!r}: write ENTRY.SETTING=VALUE, e.g. {example}")
        out.setdefault(entry, {})[name] = value
    return out
