"""review24 (round 70): the runs and fires a file schedule made, once a developer removes it from its task's list,
are listed as another schedule's. A task declares two daily schedules, 03:00 and 06:00 (``.0`` and ``.1``), each
backfilled a day (a run each, its ``schedule_id`` and ``fire_time``); the 03:00 one is removed from the file. On main a
file schedule's id is its place (README *Schedules*): the 06:00 schedule becomes ``.0``, and the 03:00 schedule's run
and fire are listed under it (``/api/runs?schedule_id``, ``/api/schedules/<id>/fires``): a 03:00 fire time on a 06:00
schedule. wt70-xfails' mend (a schedule's row follows its definition) moves the 06:00 schedule's fires and runs to
``.0`` and deletes every fire of the removed one there, but leaves its run's ``schedule_id`` ``.0``: listed as the
06:00 schedule's all the same. A removed schedule's history should keep naming it, or name no schedule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.schedules.test_policies import runs_of
from tests.schedules.test_review23_paused_follows_index import AT_3, AT_6, CHAIN

TASK = "daily.sales_chain.DailyTask"


def test_a_removed_schedules_run_is_not_listed_as_another_schedules(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("daily/sales_chain", CHAIN.format(schedules=f"{AT_3}, {AT_6}"))
    nectar = closed_at_end(Nectar(settings))
    made = {}
    for place in (0, 1):
        backfill = nectar.schedules.backfill(f"{TASK}.{place}", "2026-03-01", "2026-03-01T23:59")
        [fire] = backfill.fires
        made[place] = fire.run_id
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_6))  # the 03:00 schedule removed
    nectar.schedules.sync()
    [view] = nectar.schedules.views()
    assert view.to_dict()["cron"] == "0 6 * * *"
    listed = {run.id: (run.schedule_id, run.fire_time) for run in runs_of(nectar, view.id)}
    fires = [fire.fire_time for fire, _ in nectar.schedules.fires(view.id)]
    assert made[0] not in listed, f"the 03:00 schedule's run {listed[made[0]]} is listed as {view.id}'s (06:00)"
    assert len(fires) <= 1, f"{view.id} (06:00) lists fires of {fires}"
