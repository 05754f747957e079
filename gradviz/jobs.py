"""Background jobs with progress and cancellation, so a UI can start long work and poll it.

One worker thread runs jobs in order (no two trainings fight over the cores or the GPU); a job's
function receives a `JobHandle` to report progress and to check for cancellation.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobHandle:
    """Shared, thread-safe state of one job: progress, a metric history, cancellation, outcome."""

    name: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    done: int = 0
    total: int = 0
    message: str = ""
    history: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    result: Any = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, done: int, total: int, message: str = "", **metrics: float) -> None:
        with self._lock:
            self.done, self.total, self.message = done, total, message
            if metrics:
                self.history.append({"step": done, **metrics})

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def state(self) -> str:
        if self.finished is None:
            return "running" if self.done or self.total else "queued"
        if self.error:
            return "cancelled" if self.cancelled else "failed"
        return "done"

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.history)


class JobRunner:
    """Runs submitted jobs one at a time on a background thread."""

    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gradviz-job")
        self.jobs: dict[str, JobHandle] = {}
        self._futures: dict[str, Future] = {}

    def submit(self, name: str, fn: Callable[[JobHandle], Any]) -> JobHandle:
        handle = JobHandle(name)
        self.jobs[handle.id] = handle

        def run() -> None:
            try:
                handle.result = fn(handle)
            except BaseException as exc:
                handle.error = f"{type(exc).__name__}: {exc}"
                handle.message = handle.error
                if not handle.cancelled:
                    handle.result = traceback.format_exc()
            finally:
                handle.finished = time.time()

        self._futures[handle.id] = self._pool.submit(run)
        return handle

    def wait(self, handle: JobHandle, timeout: float | None = None) -> JobHandle:
        self._futures[handle.id].result(timeout=timeout)
        return handle
