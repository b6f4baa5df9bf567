"""review23: a file schedule's id is its place in its task's ``schedules`` list (``<type>.<chain>.<Task>.<index>``,
README *Schedules*), and what the registry keeps of it (paused, its fires, its cursor) is kept by that id. An
operator pauses the 03:00 schedule over HTTP (its upstream is down: README, "a file's schedule is paused over HTTP");
a developer adds a 06:00 schedule at the top of the same list: the pause is now the 06:00 schedule's, which never
fires, and the 03:00 one, now ``.1``, is a new schedule, active, firing against the upstream that is down. Nothing
says so; the 03:00 schedule's past fires are listed under the 06:00 one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end

CHAIN = """
import luigi
from nectar import NectarTask, Schedule


class DailyTask(NectarTask):
    schedules = [{schedules}]
    date = luigi.DateParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.date))
"""
AT_3 = 'Schedule("0 3 * * *", fire_time_param="date")'
AT_6 = 'Schedule("0 6 * * *", fire_time_param="date")'


def test_a_paused_file_schedule_stays_paused_when_another_is_added_before_it(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_3))
    book = closed_at_end(Nectar(settings)).schedules
    [only] = book.views()
    book.change(only.id, {"paused": True})
    write_chain("daily/sales_chain", CHAIN.format(schedules=f"{AT_6}, {AT_3}"))
    paused = {view.to_dict()["cron"]: view.paused for view in book.views()}
    assert paused == {"0 3 * * *": True, "0 6 * * *": False}, paused
