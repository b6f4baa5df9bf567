"""A service's schedules with a clock the test moves: a chain file declaring them, the registry in SQLite."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from harness import Processes
from nectar.config import Settings, configure
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.clock import Clock
from tests.schedules.firing import TICK_CHAIN, Firing

DAILY_CHAIN = '''
import luigi
from nectar import NectarTask, Schedule


class DailyTask(NectarTask):
    """Yesterday's figures, every day at 03:00 in Paris."""

    schedules = [Schedule("0 3 * * *", timezone="Europe/Paris", fire_time_param="date", fire_time_offset="-P1D")]
    date = luigi.DateParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.date))


class SlotTask(NectarTask):
    """A task schedules made over HTTP run: a date-time and a fixed label."""

    when = luigi.DateSecondParameter()
    label = luigi.Parameter(default="x")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.when} {self.label}")
'''


def utc(text: str) -> float:
    """``2026-03-29T03:00`` in UTC as unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("UTC")).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(utc("2026-06-01T00:00"))


@pytest.fixture
def nectar(settings: Settings, write_chain: Callable[[str, str], Path], clock: Clock) -> Iterator[Nectar]:
    write_chain("daily/sales_chain", DAILY_CHAIN)
    with Nectar(settings) as service:
        service.schedules.clock = clock.time
        yield service


@pytest.fixture
def loop(nectar: Nectar, clock: Clock) -> ScheduleLoop:
    return ScheduleLoop(nectar.schedules, clock=clock.time)


def on_registry(request: pytest.FixtureRequest, settings: Settings, kind: str) -> Settings:
    """``settings`` with the registry of ``kind``: SQLite in the data folder (as they are), or a fresh PostgreSQL
    database (any other kind), configured for this process."""
    if kind == "sqlite":
        return settings
    value = settings.replace(database_url=request.getfixturevalue("database_url"))
    configure(value)
    return value


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings of a registry of each kind: SQLite in the data folder, or a fresh PostgreSQL database."""
    return on_registry(request, settings, request.param)


@pytest.fixture
def firing(
    registry: Settings,
    write_chain: Callable[[str, str], Path],
    processes: Processes,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Iterator[Firing]:
    ledger = tmp_path / "ledger.txt"
    write_chain("daily/tick_chain", TICK_CHAIN.format(ledger=str(ledger)))
    made = Firing(registry, processes, ledger, start_worker)
    yield made
    made.nectar.close()
