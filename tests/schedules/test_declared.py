"""Schedules declared in chain files: their errors beside the chain, several per task, edits seen at the next tick."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.clock import Clock
from tests.schedules.test_policies import end_run, fires_of, runs_of

BAD_CHAIN = """
import luigi
from nectar import NectarTask, Schedule


class BadCronTask(NectarTask):
    schedules = [Schedule("61 3 * * *")]

    def run(self):
        with self.output().open("w") as out:
            out.write("x")


class BadZoneTask(NectarTask):
    schedules = Schedule("0 3 * * *", timezone="Mars/Olympus_Mons")

    def run(self):
        with self.output().open("w") as out:
            out.write("x")


class IntTimeTask(NectarTask):
    schedules = [Schedule("0 3 * * *", fire_time_param="count")]
    count = luigi.IntParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write("x")


class MissingParamTask(NectarTask):
    schedules = [Schedule("0 3 * * *", fire_time_param="date")]
    date = luigi.DateParameter()
    region = luigi.Parameter()

    def run(self):
        with self.output().open("w") as out:
            out.write("x")


class FineTask(NectarTask):
    label = luigi.Parameter(default="ok")

    def run(self):
        with self.output().open("w") as out:
            out.write(self.label)
"""

MULTI_CHAIN = """
import luigi
from nectar import NectarTask, Schedule


class {name}(NectarTask):
    schedules = [
        Schedule("0 3 * * *", name="morning", fire_time_param="when"),
        Schedule(interval_s={interval}, name="often", fire_time_param="when", params={{"label": "often"}}),
    ]
    when = luigi.DateSecondParameter()
    label = luigi.Parameter(default="morning")

    def run(self):
        with self.output().open("w") as out:
            out.write(self.label)
"""

WriteChain = Callable[[str, str], Path]


def test_bad_declarations_are_listed_beside_the_chain_and_its_tasks_still_work(
    nectar: Nectar, write_chain: WriteChain, loop: ScheduleLoop
) -> None:
    write_chain("daily/bad_chain", BAD_CHAIN)
    info = nectar.chain("daily", "bad_chain")
    assert info.schedules == ()
    errors = sorted(info.schedule_errors)
    assert len(errors) == 4, errors
    expected = {
        "BadCronTask.schedules[0]: cron:",
        "BadZoneTask.schedules[0]: timezone:",
        "IntTimeTask.schedules[0]: fire_time_param: count is a",
        "MissingParamTask.schedules[0]: params",
    }
    for start in expected:
        assert any(error.startswith(start) for error in errors), f"no error starting {start!r} in {errors}"
    assert "Mars/Olympus_Mons" in next(e for e in errors if e.startswith("BadZoneTask"))
    assert "region" in next(e for e in errors if e.startswith("MissingParamTask"))
    submitted = nectar.submit("daily", "bad_chain", "FineTask", {})
    assert submitted.run is not None and submitted.created
    loop.tick()
    assert not any(view.id.startswith("daily.bad_chain.") for view in nectar.schedules.views())


@pytest.fixture
def multi(nectar: Nectar, write_chain: WriteChain, clock: Clock) -> Callable[..., Path]:
    def write(name: str = "MultiTask", interval: int = 3600) -> Path:
        return write_chain("daily/multi_chain", MULTI_CHAIN.format(name=name, interval=interval))

    write()
    return write


def test_a_task_declares_several_named_schedules_and_each_fires(
    nectar: Nectar, multi: Callable[..., Path], loop: ScheduleLoop, clock: Clock
) -> None:
    assert nectar.chain("daily", "multi_chain").schedule_errors == ()
    clock.advance(30)
    loop.tick()
    for _ in range(3):
        clock.advance(3600)
        loop.tick()
    morning = runs_of(nectar, "daily.multi_chain.MultiTask.morning")
    often = runs_of(nectar, "daily.multi_chain.MultiTask.often")
    assert [(run.params["when"], run.params["label"]) for run in morning] == [("2026-06-01T030000", "morning")]
    assert [(run.params["when"], run.params["label"]) for run in often] == [
        (f"2026-06-01T0{hour}0000", "often") for hour in (1, 2, 3)
    ]
    assert [view.source for view in nectar.schedules.views() if view.id.startswith("daily.multi_chain.")] == [
        "file",
        "file",
    ]


def test_editing_the_file_changes_the_schedule_at_the_next_tick(
    nectar: Nectar, multi: Callable[..., Path], loop: ScheduleLoop, clock: Clock
) -> None:
    sid = "daily.multi_chain.MultiTask.often"
    loop.tick()
    record = nectar.runs.schedule(sid)
    assert record is not None and (record.version, record.spec.timing.interval_s) == (1, 3600)
    multi(interval=60)
    loop.tick()
    record = nectar.runs.schedule(sid)
    assert record is not None and (record.version, record.spec.timing.interval_s) == (2, 60)
    start = clock.now
    for _ in range(3):
        clock.advance(60)
        loop.tick()
    assert [f.fire_time - start for f in fires_of(nectar, sid)] == [60, 120, 180]
    assert {f.version for f in fires_of(nectar, sid)} == {2}


def test_removing_a_schedule_from_the_file_removes_its_row_at_the_next_tick(
    nectar: Nectar, multi: Callable[..., Path], write_chain: WriteChain, loop: ScheduleLoop, clock: Clock
) -> None:
    loop.tick()
    assert nectar.runs.schedule("daily.multi_chain.MultiTask.often") is not None
    source = MULTI_CHAIN.format(name="MultiTask", interval=60)
    kept = source.replace(
        '        Schedule(interval_s=60, name="often", fire_time_param="when", params={"label": "often"}),\n', ""
    )
    assert kept != source
    write_chain("daily/multi_chain", kept)
    loop.tick()
    assert nectar.runs.schedule("daily.multi_chain.MultiTask.often") is None
    assert nectar.runs.schedule("daily.multi_chain.MultiTask.morning") is not None
    clock.advance(2 * 3600)
    loop.tick()
    assert fires_of(nectar, "daily.multi_chain.MultiTask.often") == []


@pytest.mark.parametrize("change", ["renamed", "removed", "file-deleted"])
def test_a_renamed_or_removed_task_s_schedule_stops_firing(
    nectar: Nectar, multi: Callable[..., Path], write_chain: WriteChain, loop: ScheduleLoop, clock: Clock, change: str
) -> None:
    old = "daily.multi_chain.MultiTask.often"
    multi(interval=60)
    loop.tick()
    clock.advance(60)
    loop.tick()
    assert len(fires_of(nectar, old)) == 1
    if change == "renamed":
        multi(name="RenamedTask", interval=60)
    elif change == "removed":
        write_chain("daily/multi_chain", "import luigi\nfrom nectar import NectarTask\n")
    else:
        multi().unlink()
    loop.tick()
    assert nectar.runs.schedule(old) is None
    for _ in range(10):
        clock.advance(60)
        loop.tick()
    assert len(fires_of(nectar, old)) == 1
    renamed = fires_of(nectar, "daily.multi_chain.RenamedTask.often")
    assert len(renamed) == (10 if change == "renamed" else 0)


def test_a_file_schedule_paused_over_http_stays_paused_when_its_file_is_edited(
    nectar: Nectar, multi: Callable[..., Path], loop: ScheduleLoop, clock: Clock
) -> None:
    sid = "daily.multi_chain.MultiTask.often"
    nectar.schedules.change(sid, {"paused": True})
    multi(interval=60)
    loop.tick()
    record = nectar.runs.schedule(sid)
    assert record is not None and (record.version, record.paused, record.spec.timing.interval_s) == (2, True, 60)
    for _ in range(5):
        clock.advance(60)
        loop.tick()
    assert fires_of(nectar, sid) == []
    assert nectar.schedules.view(sid).paused


def test_a_chain_file_that_stops_importing_keeps_its_schedules_and_fires_them_once_fixed(
    nectar: Nectar, multi: Callable[..., Path], write_chain: WriteChain, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = "daily.multi_chain.MultiTask.often"
    multi(interval=60)
    loop.tick()
    start = clock.now
    write_chain("daily/multi_chain", "import luigi\nthis is not python\n")
    clock.advance(60)
    loop.tick()
    assert nectar.chain("daily", "multi_chain").import_failed
    assert nectar.runs.schedule(sid) is not None
    assert fires_of(nectar, sid) == []
    multi(interval=60)
    clock.advance(60)
    loop.tick()
    assert [(f.fire_time - start, f.state) for f in fires_of(nectar, sid)] == [(60, "queued"), (120, "queued")]


QUEUED_CHAIN = """
import luigi
from nectar import NectarTask, Schedule


class QueuedTask(NectarTask):
    schedules = Schedule(interval_s=60, fire_time_param="when", overlap="queue")
    when = luigi.DateSecondParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.when))
"""


def test_a_held_fire_of_a_chain_that_stops_importing_waits_for_the_fix_instead_of_being_skipped(
    nectar: Nectar, write_chain: WriteChain, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = "daily.queued_chain.QueuedTask.0"
    write_chain("daily/queued_chain", QUEUED_CHAIN)
    loop.tick()
    for _ in range(2):
        clock.advance(60)
        loop.tick()
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "held"]
    write_chain("daily/queued_chain", "import luigi\nthis is not python\n")
    (first,) = runs_of(nectar, sid)
    end_run(nectar, first.id)
    loop.tick()
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "held"]
    write_chain("daily/queued_chain", QUEUED_CHAIN)
    loop.tick()
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "queued"]
