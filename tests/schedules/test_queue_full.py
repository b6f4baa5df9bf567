"""A schedule firing while the run queue is at its bound (``NECTAR_MAX_QUEUE``): skipped, said, and the next fires."""

from __future__ import annotations

import logging

import pytest

from nectar.config import Settings, configure
from nectar.registry import Run
from nectar.registry.model import RunFilter, RunState
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.clock import Clock
from tests.schedules.conftest import on_registry
from tests.schedules.firing import iso
from tests.schedules.test_policies import end_run, fires_of, make, runs_of

#: the queue's bound in these tests: two PENDING runs at most
BOUND = 2


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Either registry (each counts the queue in its own SQL), the queue bounded at :data:`BOUND` runs."""
    value = on_registry(request, settings, request.param).replace(max_queue=BOUND)
    configure(value)
    return value


def fill_queue(nectar: Nectar, count: int = BOUND) -> list[str]:
    """Queue ``count`` runs a client submitted; their ids."""
    ids = []
    for hour in range(count):
        submitted = nectar.submit("daily", "sales_chain", "SlotTask", {"when": f"2026-05-01T{hour:02d}0000"})
        assert submitted.run is not None and submitted.created
        ids.append(submitted.run.id)
    return ids


def pending(nectar: Nectar) -> list[Run]:
    """The runs queued (PENDING)."""
    runs, _ = nectar.runs.find(RunFilter(state=RunState.PENDING), limit=100)
    return runs


def test_a_fire_with_the_queue_full_is_skipped_naming_the_bound_and_the_next_fire_queues(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue at its bound when a fire is due: the fire is recorded skipped with the reason (in its history, and
    logged at WARNING), no run is queued past the bound, the loop's next fire time moves on (no pass spins on it),
    and once a run left the queue the next fire queues its run."""
    sid = make(nectar, interval_s=60)
    queued = fill_queue(nectar)
    clock.advance(60)
    with caplog.at_level(logging.WARNING, logger="nectar.schedules"):
        loop.tick()
    (fire,) = fires_of(nectar, sid)
    assert fire.state == "skipped"
    assert fire.reason is not None and f"{BOUND} runs are queued" in fire.reason
    assert not runs_of(nectar, sid)
    assert len(pending(nectar)) == BOUND
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and sid in r.getMessage()]
    assert len(warned) == 1 and "skipped" in warned[0].getMessage() and "queued" in warned[0].getMessage()
    assert loop.next_due() == fire.fire_time + 60
    loop.tick()  # nothing due: the skipped fire is not tried again
    assert len(fires_of(nectar, sid)) == 1
    end_run(nectar, queued[0])
    clock.advance(60)
    loop.tick()
    fires = fires_of(nectar, sid)
    assert [f.state for f in fires] == ["skipped", "queued"]
    (run,) = runs_of(nectar, sid)
    assert run.state == RunState.PENDING and run.id == fires[1].run_id


def test_a_fire_joining_an_active_run_is_made_with_the_queue_full(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    """A fire whose run a client already queued adds nothing to the queue: it joins that run, full queue or not."""
    sid = make(nectar, interval_s=60)
    joined = nectar.submit("daily", "sales_chain", "SlotTask", {"when": "2026-06-01T000100"})
    assert joined.run is not None
    fill_queue(nectar, BOUND - 1)  # the queue full with the joined run
    clock.advance(60)
    loop.tick()
    (fire,) = fires_of(nectar, sid)
    assert (fire.state, fire.run_id) == ("queued", joined.run.id)


def test_a_backfill_with_the_queue_full_waits_held_and_queues_as_there_is_room(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    """Fires a backfill holds are released into the queue only while it has room: the rest stay held, none
    skipped, and are queued as runs leave the queue."""
    sid = make(nectar, interval_s=60, catchup="none")
    queued = fill_queue(nectar)
    end_run(nectar, queued[0])
    clock.advance(600)
    loop.tick()  # the missed fires skipped (catchup none), the one on time queued: the queue full again
    assert len(pending(nectar)) == BOUND
    start, end = clock.now - 300, clock.now - 121

    def backfilled() -> list[str]:
        return sorted(f.state for f in fires_of(nectar, sid) if start <= f.fire_time <= end)

    nectar.schedules.backfill(sid, iso(start), iso(end))
    assert backfilled() == ["held"] * 3
    loop.tick()
    assert backfilled() == ["held"] * 3
    end_run(nectar, queued[1])
    loop.tick()
    assert backfilled() == ["held", "held", "queued"]
    assert len(pending(nectar)) == BOUND
    for run in pending(nectar):
        end_run(nectar, run.id)
    loop.tick()
    assert backfilled() == ["queued"] * 3
