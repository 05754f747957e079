"""The shelf behind the pages' background computations: one job per result, shared by sessions, cancelled when
nobody waits for it any more, a failure shown once and then retried."""
import threading

from app_pages.background import Shelf
from gradviz.jobs import JobRunner


def _starter(runner: JobRunner, gate: threading.Event, fail: bool = False):
    def start():
        def work(job):
            gate.wait(10)
            if fail:
                raise RuntimeError("no memory")
            return "ready"
        return runner.submit("work", work)
    return start


def test_two_sessions_asking_for_one_result_share_one_job_and_a_forgotten_one_is_cancelled():
    runner, gate, shelf = JobRunner(), threading.Event(), Shelf(limit=4)
    first = shelf.job_for("grid-a", _starter(runner, gate), asker="alice")
    assert shelf.job_for("grid-a", _starter(runner, gate), asker="bob") is first  # bob waits for the same job
    moved = shelf.job_for("grid-b", _starter(runner, gate), asker="alice")
    assert moved is not first and not first.cancelled  # bob still waits for grid-a
    shelf.job_for("grid-c", _starter(runner, gate), asker="bob")
    assert first.cancelled  # now nobody does
    assert not moved.cancelled
    gate.set()
    runner.wait(moved, timeout=10)
    assert moved.state == "done"


def test_a_failed_job_is_shown_once_then_started_again():
    runner, gate, shelf = JobRunner(), threading.Event(), Shelf(limit=4)
    gate.set()
    failed = shelf.job_for("grid-a", _starter(runner, gate, fail=True), asker="alice")
    runner.wait(failed, timeout=10)
    assert shelf.job_for("grid-a", _starter(runner, gate), asker="alice") is failed and failed.state == "failed"
    again = shelf.job_for("grid-a", _starter(runner, gate), asker="alice")
    assert again is not failed
    runner.wait(again, timeout=10)
    assert again.state == "done"


def test_the_shelf_keeps_the_newest_results_up_to_its_limit():
    shelf = Shelf(limit=2)
    for key in "abc":
        shelf.put(key, key.upper())
    assert shelf.get("a") is None and shelf.get("b") == "B"
    shelf.put("d", "D")  # b was read last, so c goes
    assert shelf.get("c") is None and shelf.get("b") == "B" and shelf.get("d") == "D"
