"""A condition that holds poll after poll (the folder cannot be listed, objects left for a later poll with the run
queue full) is logged once as it begins (WARNING) and once as it ends (INFO), not at every poll."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.clock import Clock
from tests.schedules.test_policies import end_run

# the bounded registry of either kind the queue's tests use; the chain, folders and service of the core tests
from tests.schedules.test_queue_full import BOUND, settings  # noqa: F401  (fixtures)
from tests.triggers.test_core import api_trigger, declared, land, landing, nectar  # noqa: F401  (fixtures)
from tests.triggers.test_queue_full import submit

#: seconds the test's clock moves between two passes: past any trigger's poll interval, so each pass polls
PAST_ANY_POLL = 24 * 3600.0


def passes(loop: TriggerLoop, clock: Clock, caplog: pytest.LogCaptureFixture, count: int) -> list[tuple[int, str]]:
    """``count`` passes, the clock moved past the trigger's interval before each; the lines they logged about the
    trigger, with their levels."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nectar.triggers"):
        for _ in range(count):
            clock.advance(PAST_ANY_POLL)
            loop.tick()
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("trigger ")]


def test_a_folder_that_cannot_be_listed_is_said_once_as_it_begins_and_once_as_it_ends(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watched folder gone for four polls: one WARNING naming it; back: one INFO; gone again: a WARNING again.
    Before, each of the four polls logged the WARNING."""
    clock = Clock(2_000_000_000.0)
    trigger_id = api_trigger(nectar, landing, existing="all")
    loop = TriggerLoop(nectar.triggers, clock=clock.time)
    assert passes(loop, clock, caplog, 1) == []
    away = landing.with_name("landing-away")
    os.rename(landing, away)
    logged = passes(loop, clock, caplog, 4)
    assert [level for level, _ in logged] == [logging.WARNING], logged
    assert trigger_id in logged[0][1] and "cannot list" in logged[0][1] and str(landing) in logged[0][1]
    os.rename(away, landing)
    assert passes(loop, clock, caplog, 3) == [(logging.INFO, f"trigger {trigger_id}: lists again")]
    os.rename(landing, away)
    assert [level for level, _ in passes(loop, clock, caplog, 2)] == [logging.WARNING]


def test_objects_left_for_a_later_poll_are_said_once_while_the_queue_stays_full(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The queue at its bound, two objects landed: one WARNING over three polls; a run ends, one object is claimed and
    the queue is full again: no new line but the claim's; the last run ends: the rest claimed, one INFO that nothing
    is left. Before, each poll with the queue full logged the WARNING."""
    clock = Clock(2_000_000_000.0)
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND)]
    trigger_id = api_trigger(nectar, landing, existing="all")
    land(landing, "a.csv", "b.csv")
    loop = TriggerLoop(nectar.triggers, clock=clock.time)
    logged = passes(loop, clock, caplog, 3)
    assert [level for level, _ in logged] == [logging.WARNING], logged
    assert "left for a later poll" in logged[0][1] and f"{BOUND} runs are queued" in logged[0][1]
    end_run(nectar, queued[0])
    logged = passes(loop, clock, caplog, 2)
    assert [(level, "new object(s)" in said) for level, said in logged] == [(logging.INFO, True)], logged
    end_run(nectar, queued[1])
    logged = passes(loop, clock, caplog, 2)
    assert [level for level, _ in logged] == [logging.INFO, logging.INFO], logged
    assert logged[1][1] == f"trigger {trigger_id}: no new object left for a later poll"
