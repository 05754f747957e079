"""A page's slow computation (a 4-model grid, a sanity check with IntegratedGradients) made once for every session,
in the background: the page settles at once with a placeholder showing progress, stays usable, and draws the result
when it is ready, without a reload. Fast computations use the same shelf synchronously (`remember`)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from gradviz.jobs import JobHandle, JobRunner

PENDING = "computing in the background"  # the placeholder's words; benchmarks/first_visit waits for them to go


class Shelf:
    """Finished results by key, newest last, at most `limit` (grids are tens of MB); the jobs computing the missing
    ones. Thread-safe: a job's thread puts, scripts of every session read."""

    def __init__(self, limit: int) -> None:
        self.limit, self._items, self._lock = limit, OrderedDict(), threading.Lock()
        self._pending: dict[Hashable, JobHandle] = {}
        self._waiters: dict[Hashable, set[str]] = {}

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def job_for(self, key: Hashable, start: Callable[[], JobHandle], asker: str) -> JobHandle:
        """The job computing `key`: the one already going (another session's too), else a new one from `start`;
        a failed one is handed back once, so its error is shown, and then forgotten, so a rerun tries again.
        `asker` (a session) stops waiting for what it asked before; a job nobody waits for any more is cancelled,
        so moving a slider through five values does not queue five grids."""
        with self._lock:
            for other, waiting in list(self._waiters.items()):
                waiting.discard(asker)
                if not waiting and other != key:
                    del self._waiters[other]
                    left = self._pending.pop(other, None)
                    if left is not None and left.finished is None:
                        left.cancel()
            job = self._pending.get(key)
            if job is not None and job.state in ("failed", "cancelled"):
                del self._pending[key]
                return job
            if job is None or job.state == "done":
                job = self._pending[key] = start()
            self._waiters.setdefault(key, set()).add(asker)
            return job


class Cancelled(Exception):
    """A background computation nobody waits for any more."""


def stop_if_cancelled(job: JobHandle) -> None:
    if job.cancelled:
        raise Cancelled(job.name)


@st.cache_resource
def shelf(kind: str, limit: int) -> Shelf:
    """The process-wide shelf of one kind of result."""
    return Shelf(limit)


@st.cache_resource
def page_runner() -> JobRunner:
    """Pages' background computations, one at a time, on their own thread: a training or analysis job running on
    the shared job runner does not hold up a page."""
    return JobRunner()


def remember(store: Shelf, key: Hashable, make: Callable[[], Any]) -> Any:
    """The result for `key`, computed here (in the script's thread) when the shelf lacks it."""
    found = store.get(key)
    if found is None:
        found = make()  # outside the lock: another session may be computing its own
        store.put(key, found)
    return found


def in_background(store: Shelf, key: Hashable, make: Callable[[JobHandle], Any], what: str, hint: str) -> Any | None:
    """The result for `key` when ready; else start `make(job)` (once, whichever session asks first), show a
    placeholder with the job's progress that reruns the page once the result is in, and return None.
    `make` runs without Streamlit: load models and data in the script first and pass them in; it may call
    `stop_if_cancelled(job)` between steps."""
    found = store.get(key)
    if found is not None:
        return found

    def start() -> JobHandle:
        def work(job: JobHandle) -> str:
            stop_if_cancelled(job)  # nobody waits for it any more
            store.put(key, make(job))
            return "ready"
        return page_runner().submit(what, work)

    job = store.job_for(key, start, get_script_run_ctx().session_id)
    if job.state in ("failed", "cancelled"):
        st.error(f"{what} failed: {job.error}. Change a setting or reload the page to try again.",
                 icon=":material/error:")
        return None
    st.info(f"{what}: {PENDING} ({hint}). The page stays usable; the result appears here when it is ready.",
            icon=":material/hourglass_top:")
    _await(job.id, what)
    return None


@st.fragment(run_every=0.5)
def _await(job_id: str, what: str) -> None:
    """The job's progress; once it has ended, the whole page reruns and finds the result on the shelf."""
    job = page_runner().jobs.get(job_id)
    if job is None or job.finished is not None:
        st.rerun(scope="app")
    st.progress(job.fraction, text=f"{what}: {job.message or 'starting…'}")
