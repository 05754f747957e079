"""Progress of long work: a tqdm bar on a terminal, plain lines in a log.

A redrawn bar written to a log file (CI, `nohup`, a background zoo build) becomes one enormous line of
carriage returns; a line every half minute reads well there and still says how long is left.
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


class LogLines:
    """tqdm's interface for logs: a plain line every `interval` seconds (and at the end) instead of a bar."""

    def __init__(self, total: int, initial: int, desc: str, unit: str = "step", interval: float = 30.0):
        self.total, self.n, self.desc, self.unit, self.interval = total, initial, desc, unit, interval
        self.started = self.last = time.monotonic()
        self.start_n, self.postfix = initial, ""

    def set_postfix(self, values: dict, refresh: bool = False) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        """`refresh`: news from inside a long unit of work (an attack's images), printed at most every interval."""
        self.postfix = text
        if refresh:
            self._line(force=False)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._line(force=self.n == self.total)

    def _line(self, force: bool) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval or force:
            self.last = now
            rate = (self.n - self.start_n) / max(now - self.started, 1e-9)
            left = f"~{(self.total - self.n) / rate / 60:.0f} min left" if rate > 0 else "estimating"
            print(f"{self.desc}: {self.unit} {self.n}/{self.total} ({self.n / self.total:.0%}), "
                  f"{rate:.2f} {self.unit}s/s, {left}  {self.postfix}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int, desc: str, enabled: bool, unit: str = "step"):
    """A tqdm bar on a terminal; occasional plain lines when stderr is a log file, CI or a background job."""
    if enabled and not sys.stderr.isatty():
        return LogLines(total, initial, desc, unit)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)


class Estimate:
    """Done/total with the time spent and an estimate of the time left, for views that draw their own bar."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def describe(self, done: int, total: int, upper_bound: bool = False) -> str:
        """'23/98 · 4 s spent, ~13 s left'; with `upper_bound`, 'at most ~13 s left' (work that may end early)."""
        spent = time.monotonic() - self.started
        left = spent * (total - done) / done if done else None
        guess = "estimating…" if left is None else f"{'at most ' if upper_bound else ''}~{left:.0f} s left"
        return f"{done}/{total} · {spent:.0f} s spent, {guess}"


class PartsEstimate:
    """Time left for work in `parts` equal parts (a grid's models) whose steps may stop early (JSMA ends a model's
    part once every example reached its target, far below its step budget). A step-based estimate then jumps each
    time a part ends early (a 4-model JSMA grid: 554 s left, then 98 s); once a part has finished, this one says
    the finished parts' mean time for each part still to come instead, and before that the at-most bound."""

    def __init__(self, parts: int, noun: str = "part") -> None:
        self.parts, self.noun, self.started = parts, noun, time.monotonic()
        self.part_started, self.current, self.finished = self.started, None, []

    def describe(self, done: int, total: int, part: str) -> str:
        now = time.monotonic()
        if part != self.current:
            if self.current is not None:  # the first part started with the work
                self.finished.append(now - self.part_started)
                self.part_started = now
            self.current = part
        spent = now - self.started
        where = f"{self.noun} {len(self.finished) + 1} of {self.parts}"
        if not self.finished:
            left = spent * (total - done) / done if done else None
            guess = "estimating…" if left is None else f"at most ~{left:.0f} s left"
            return f"{where} · {spent:.0f} s spent, {guess}"
        mean = sum(self.finished) / len(self.finished)
        left = max(mean - (now - self.part_started), 0.0) + mean * (self.parts - len(self.finished) - 1)
        return f"{where} · {spent:.0f} s spent, ~{left:.0f} s left (finished {self.noun}s took {mean:.0f} s each)"
