"""What firing costs: a stored definition read once, an idle pass one cheap read, no task kept after its fire."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nectar.schedules.loop import ScheduleLoop
from nectar.schedules.model import ScheduleRecord
from nectar.service import Nectar
from tests.clock import Clock
from tests.schedules.conftest import DAILY_CHAIN

SLOT = {"task": "daily/sales_chain/SlotTask", "interval_s": 60, "fire_time_param": "when"}


def stored(nectar: Nectar, schedule_id: str) -> ScheduleRecord:
    record = nectar.runs.schedule(schedule_id)
    assert record is not None, f"no row for schedule {schedule_id}"
    return record


def test_a_stored_definition_is_read_once_and_again_once_edited(nectar: Nectar) -> None:
    made = nectar.schedules.create(SLOT)

    first = stored(nectar, made.id)
    assert stored(nectar, made.id).spec is first.spec  # the loop reads the row at each fire
    assert next(r for r in nectar.runs.schedules() if r.id == made.id).spec is first.spec  # and all at each reload

    nectar.schedules.change(made.id, {"interval_s": 120})
    assert stored(nectar, made.id).spec.timing.interval_s == 120


def test_a_pass_compares_the_file_schedules_only_after_a_change(
    nectar: Nectar, loop: ScheduleLoop, write_chain: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop.tick()  # the file's schedule gets its row
    loop.tick()
    compared: list[tuple[Any, ...]] = []
    original = nectar.runs.sync_declared

    def sync_declared(*args: Any) -> bool:
        compared.append(args)
        return bool(original(*args))

    monkeypatch.setattr(nectar.runs, "sync_declared", sync_declared)

    loop.tick()
    assert compared == []  # nothing changed: the rows are not read again

    nectar.schedules.create(SLOT)
    loop.tick()
    assert len(compared) == 1  # a row changed (here, one made over HTTP): compared again

    write_chain("daily/sales_chain", DAILY_CHAIN.replace('fire_time_offset="-P1D")]', 'fire_time_offset="-P1D"), '
                'Schedule("0 4 * * *", fire_time_param="date", name="late")]'))  # fmt: skip
    loop.tick()
    assert len(compared) == 2  # the file changed: compared, and its new schedule has its row
    assert stored(nectar, "daily.sales_chain.DailyTask.late").spec.timing.cron == "0 4 * * *"


def test_no_task_a_pass_made_outlives_it(nectar: Nectar, loop: ScheduleLoop, clock: Clock) -> None:
    """luigi keeps every task instance made in its instance cache: a clock making one per fire grew without end."""
    nectar.schedules.create({**SLOT, "interval_s": 1})
    loop.tick()
    clock.advance(5)

    assert loop.tick().get("queued") == 5
    gc.collect()
    assert [obj for obj in gc.get_objects() if type(obj).__name__ == "SlotTask"] == []
