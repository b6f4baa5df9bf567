"""What firing costs the registry when nothing changed: a stored definition read once, an idle pass one cheap read."""

from __future__ import annotations

from nectar.schedules.model import ScheduleRecord
from nectar.service import Nectar

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
