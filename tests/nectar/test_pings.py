"""The process's one loop of pings (:mod:`nectar.pings`): luigi workers of a process that keeps standby threads (a
spare, a reused attempt process) are pinged by it; a worker's start and end wake no thread while it runs; a worker
stopped before its ping is due is never pinged, and its stop returns after a ping of it under way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import luigi.scheduler
import pytest

from nectar import forks, pings, standby
from nectar.luigi_internals import new_worker
from nectar.pings import PINGS, Pinged
from tests.conftest import wait_until
from tests.nectar.test_standby import kept  # noqa: F401 (a fixture)


class RecordedScheduler(luigi.scheduler.Scheduler):
    """luigi's local scheduler, which notes the worker of each ping, and holds a ping of ``held`` at ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.pinged: list[str] = []
        self.held: str | None = None
        self.holding = threading.Event()
        self.gate = threading.Event()

    def ping(self, **kwargs: Any) -> Any:
        worker = kwargs["worker"]
        if worker == self.held:
            self.holding.set()
            self.gate.wait()
        self.pinged.append(worker)
        return super().ping(**kwargs)


def switches(thread: threading.Thread) -> int:
    """The kernel's count of the times ``thread`` left its core (slept, or was preempted)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text().splitlines()
    return sum(int(line.split()[1]) for line in status if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))


def asleep(thread: threading.Thread) -> bool:
    """Whether ``thread`` is asleep now (in a wait)."""
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "S"


def loop_ended() -> None:
    """The process's loop, left waiting a long interval by a test, ends (a worker of a short one registered, gone)."""
    short = Pinged(lambda: None, 0.001)
    PINGS.register(short)
    PINGS.unregister(short)
    wait_until(lambda: not PINGS.serving)


@pytest.fixture
def loop_thread() -> Any:
    """Once the test is done: the process's loop of pings ended."""
    yield lambda: wait_until(lambda: pings._LOOP_THREAD.get(forks.pid()))
    loop_ended()


def test_the_next_workers_of_a_process_are_pinged_by_its_loop_and_wake_no_thread(
    kept: set[threading.Thread],  # noqa: F811 (the fixture)
    loop_thread: Any,
) -> None:
    """Once the process's loop runs, 20 luigi workers entered and exited one after another hand nothing to a standby
    thread and wake none: the kernel counts no switch of any standby thread meanwhile (each was handed luigi's
    keep-alive loop at its start and stopped at its end, before: 20 or more)."""
    scheduler = RecordedScheduler()
    first = new_worker(scheduler, "pings-first", 1, ping_interval=3600)
    with first:
        thread = loop_thread()
        threads = [one.thread for one in standby._KEPT[1]]
        assert thread in threads
        wait_until(lambda: all(asleep(one) for one in threads))
        before = [switches(one) for one in threads]
        for n in range(20):
            with new_worker(scheduler, f"pings-next-{n}", 1, ping_interval=3600) as worker:
                assert worker._keep_alive_thread.is_alive()
            assert not worker._keep_alive_thread.is_alive()
        assert [switches(one) for one in threads] == before
    assert scheduler.pinged == []  # none was due


def test_a_worker_stopped_before_its_ping_is_due_is_never_pinged_and_a_stop_waits_for_a_ping_under_way(
    kept: set[threading.Thread],  # noqa: F811 (the fixture)
    loop_thread: Any,
) -> None:
    """The loop's thread is held in a ping of one worker while another is started and stopped (its ping due
    meanwhile) and a third started: once the hold ends the third is pinged, the stopped one never. The held worker's
    stop returns only once its ping under way has ended (no ping for a worker that ended)."""
    scheduler = RecordedScheduler()
    scheduler.held = "pings-held"
    held = new_worker(scheduler, "pings-held", 1, ping_interval=0.01)
    held.__enter__()
    stopped = threading.Event()

    def stop() -> None:
        held.__exit__(None, None, None)
        stopped.set()

    stopping = threading.Thread(target=stop)
    try:
        wait_until(scheduler.holding.is_set)  # the loop's thread is in its ping
        with new_worker(scheduler, "pings-stopped", 1, ping_interval=0.01):
            pass
        later = new_worker(scheduler, "pings-later", 1, ping_interval=0.01)
        later.__enter__()
        stopping.start()
        wait_until(lambda: not held._keep_alive_thread.is_alive())  # unregistered; its ping still under way
        assert not stopped.is_set()
    finally:
        scheduler.gate.set()
    wait_until(stopped.is_set)
    wait_until(lambda: "pings-later" in scheduler.pinged)
    later.__exit__(None, None, None)
    stopping.join()
    assert "pings-stopped" not in scheduler.pinged
    assert scheduler.pinged[0] == "pings-held"
