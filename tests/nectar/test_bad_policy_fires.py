"""A task class whose own retry policy breaks a setting's rule (``InvalidTask``), fired by a schedule or a trigger: the
fire is recorded, skipped, saying why (its history, the schedule's or trigger's view), logged once; the clock goes on
firing the others. Before, each pass raised it out of the fire: a warning every 5 s for ever, nothing recorded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.clock import Clock
from tests.helpers.registries import closed_at_end
from tests.schedules.conftest import utc

CHAIN = '''
import datetime

import luigi
from nectar import NectarTask


class BadPolicyTask(NectarTask):
    """Retries no registry can hold."""

    retries = -1
    when = luigi.DateSecondParameter(default=datetime.datetime(2026, 1, 1))
    path = luigi.Parameter(default="")

    def run(self):
        with self.output().open("w") as out:
            out.write(self.path)


class GoodTask(NectarTask):
    when = luigi.DateSecondParameter(default=datetime.datetime(2026, 1, 1))
    path = luigi.Parameter(default="")

    def run(self):
        with self.output().open("w") as out:
            out.write(self.path)
'''

WHY = "task class policy/bad_chain/BadPolicyTask's retries"


@pytest.fixture
def nectar(settings: Settings, write_chain: Callable[[str, str], Path]) -> Nectar:
    write_chain("policy/bad_chain", CHAIN)
    return closed_at_end(Nectar(settings))


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if WHY in record.getMessage()]


def test_a_schedules_fire_of_a_class_with_a_bad_policy_is_skipped_saying_why(
    nectar: Nectar, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(utc("2026-06-01T00:00"))
    nectar.schedules.clock = clock.time
    every_minute = {"cron": "* * * * *", "fire_time_param": "when"}
    bad = nectar.schedules.create({"task": "policy/bad_chain/BadPolicyTask", **every_minute}).id
    good = nectar.schedules.create({"task": "policy/bad_chain/GoodTask", **every_minute}).id
    loop = ScheduleLoop(nectar.schedules, clock=clock.time)
    caplog.set_level(logging.INFO)
    loop.tick()
    for _ in range(22):  # two minutes, two fires of each, a pass every 5.5 s
        clock.advance(5.5)
        loop.tick()
    fires = nectar.runs.fires(bad, limit=10)
    assert [fire.state for fire in fires] == ["skipped", "skipped"], fires
    assert all(WHY in (fire.reason or "") for fire in fires), fires
    assert WHY in str(nectar.schedules.view(bad).to_dict())
    assert len(said(caplog)) == 2, said(caplog)  # once a fire, not at each pass
    assert [fire.state for fire in nectar.runs.fires(good, limit=10)] == ["queued", "queued"]


def test_a_schedules_fire_whose_import_task_has_a_bad_policy_is_skipped_saying_why(
    nectar: Nectar, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("a")
    clock = Clock(utc("2026-06-01T00:00"))
    nectar.schedules.clock = clock.time
    preload = {"strategy": "imported", "area": f"{landing}/", "import_task": "policy/bad_chain/BadPolicyTask"}
    definition = {"task": "policy/bad_chain/GoodTask", "cron": "* * * * *", "fire_time_param": "when"}
    schedule_id = nectar.schedules.create({**definition, "preload": preload}).id
    loop = ScheduleLoop(nectar.schedules, clock=clock.time)
    caplog.set_level(logging.INFO)
    for _ in range(12):  # a minute and a pass: one fire, a pass every 5.5 s
        clock.advance(5.5)
        loop.tick()
    (fire,) = nectar.runs.fires(schedule_id, limit=10)
    assert fire.state == "skipped" and WHY in (fire.reason or ""), fire
    assert "cannot make the import task" in (fire.reason or ""), fire
    assert len(said(caplog)) == 1, said(caplog)


def test_a_triggers_objects_for_a_class_with_a_bad_policy_are_skipped_saying_why(
    nectar: Nectar, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    definition = {"prefix": str(landing), "param": "path", "existing": "all"}
    bad = nectar.triggers.create({"task": "policy/bad_chain/BadPolicyTask", **definition}).id
    (landing / "a.csv").write_text("a")
    loop = TriggerLoop(nectar.triggers)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        loop._due.clear()
        loop.tick()
    objects = nectar.triggers.objects(bad)
    assert [(obj.state, run) for obj, run in objects] == [("skipped", None)], objects
    assert WHY in (objects[0][0].reason or ""), objects
    assert len(said(caplog)) <= 1, said(caplog)
