"""A schedule or a trigger that fails pass after pass (a chain's code raising as its task is made, every
``RETRY_AFTER`` seconds for as long as it lasts) is said with its traceback once, then in a line counting the same
failure at its 2nd, 4th, 8th... time in a row, not a traceback every 5 s; once it works again, a new failure is said
with its traceback again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.schedules.loop import RETRY_AFTER, ScheduleLoop
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.clock import Clock

#: a task whose making ends the process (``sys.exit(7)``) while the flag file is there
FLAKY_CHAIN = """
import os
import sys

import luigi

FLAG = {flag!r}


class FlakyTask(luigi.Task):
    when = luigi.DateSecondParameter(default=None)
    path = luigi.Parameter(default="")

    def __init__(self, *args, **kwargs):
        if os.path.exists(FLAG):
            sys.exit(7)
        super().__init__(*args, **kwargs)

    def output(self):
        return luigi.LocalTarget(os.path.join(os.path.dirname(FLAG), "never"))
"""

TASK = "flaky/flaky_chain/FlakyTask"
PASSES = 9


def said(caplog: pytest.LogCaptureFixture, what: str) -> list[tuple[int, str, bool]]:
    """The loop's records of ``what`` (``schedule <id>``): level, message, whether it carries a traceback."""
    return [
        (record.levelno, record.getMessage(), record.exc_info is not None)
        for record in caplog.records
        if record.getMessage().startswith(what)
    ]


def expected(what: str, again: str) -> list[tuple[int, str, bool]]:
    """What :data:`PASSES` failed passes say: the traceback once, then the 2nd, 4th and 8th time in a line."""
    first = [(logging.ERROR, f"{what} failed; {again} in {RETRY_AFTER:g}s", True)]
    return first + [
        (logging.WARNING, f"{what} failed {n} times in a row: SystemExit: 7; {again} in {RETRY_AFTER:g}s", False)
        for n in (2, 4, 8)
    ]


def failing_passes(tick: Callable[[], object], clock: Clock) -> None:
    for _ in range(PASSES):
        clock.advance(RETRY_AFTER)
        tick()


@pytest.fixture
def flag(write_chain: Callable[[str, str], Path], tmp_path: Path) -> Path:
    flag = tmp_path / "exit.flag"
    write_chain("flaky/flaky_chain", FLAKY_CHAIN.format(flag=str(flag)))
    return flag


def test_a_schedule_failing_every_pass_says_its_traceback_once(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, flag: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, each of the 9 passes logged ``schedule <id> failed; trying again in 5s`` with its traceback."""
    sid = nectar.schedules.create({"task": TASK, "interval_s": 1, "fire_time_param": "when"}).id
    caplog.set_level(logging.INFO, logger="nectar")
    flag.touch()
    failing_passes(loop.tick, clock)
    assert said(caplog, f"schedule {sid}") == expected(f"schedule {sid}", "trying again")
    flag.unlink()
    clock.advance(RETRY_AFTER)
    loop.tick()
    assert nectar.runs.fires(sid, limit=10), "no fire once the task could be made"
    caplog.clear()
    flag.touch()
    failing_passes(loop.tick, clock)
    assert said(caplog, f"schedule {sid}") == expected(f"schedule {sid}", "trying again")


def test_a_trigger_failing_every_poll_says_its_traceback_once(
    nectar: Nectar, clock: Clock, flag: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A landed file the trigger's task cannot be made for: the same account. Before, a traceback each poll."""
    landing = tmp_path / "landing"
    landing.mkdir()
    nectar.triggers.clock = clock.time
    body = {"task": TASK, "prefix": str(landing), "glob": "*.csv", "param": "path", "poll_s": RETRY_AFTER}
    tid = nectar.triggers.create(body).id
    (landing / "a.csv").write_text("x\n")
    caplog.set_level(logging.INFO, logger="nectar")
    flag.touch()
    failing_passes(TriggerLoop(nectar.triggers, clock=clock.time).tick, clock)
    assert said(caplog, f"trigger {tid}") == expected(f"trigger {tid}", "polling again")
