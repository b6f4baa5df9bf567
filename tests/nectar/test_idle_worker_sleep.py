"""An idle worker (no attempt, no spare) sleeps until its next look of its own (leases, luigid, a look for a run
though nothing told of one), not ``NECTAR_WORKER_POLL`` (0.05 s: 20 wake-ups a second of an idle ``nectar serve``),
and a run queued meanwhile still wakes it at once (nectar/executor.py ``_idle_for``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from nectar.config import Settings
from nectar.executor import CHECK_AHEAD, Executor
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import QUICK_CHAIN


def test_an_idle_worker_sleeps_until_its_next_look_and_a_run_queued_wakes_it(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("quick/quick_chain", QUICK_CHAIN)
    quick = settings.replace(scheduler_url=None, worker_poll_interval=0.05, heartbeat_interval=4.0)
    executor = closed_at_end(Executor(quick, concurrency=1))
    real_wait = executor.runs.wait_for_work
    waits: list[tuple[float, bool]] = []

    def wait_for_work(timeout: float, also: Sequence[int] = ()) -> bool:
        if waits:  # the first wait returns at once (a run may have been queued before it watched): then one queued
            with Nectar(settings) as nectar:
                assert nectar.submit("quick", "quick_chain", "QuickTask", {"n": 1}).run is not None
        woken = real_wait(timeout, also)
        waits.append((timeout, woken))
        return woken

    executor.runs.wait_for_work = wait_for_work  # type: ignore[method-assign]  # a spy: the real wait is made
    executor.look_anyway = 3600.0  # its next look of its own: the leases' watch, a heartbeat after the first pass's
    for _ in range(2):
        executor._serve_once()
    assert not executor.children and not len(executor.spares)
    (_, first), (timeout, woken) = waits
    # the second sleep is until the next watch, ~4 s after the first pass's (a few ms of the passes spent), where
    # it was the poll interval, 0.05 s; no luigid asked (the local scheduler)
    assert quick.heartbeat_interval * CHECK_AHEAD < timeout <= quick.heartbeat_interval, waits
    assert first and woken, waits  # woken by the run queued, not by the sleep's end
