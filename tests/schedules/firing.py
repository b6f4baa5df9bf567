"""Clocks racing on one registry: the schedules, processes and checks the exactly-once tests share."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import NECTAR, Processes, base_env, settings_env
from harness.processes import waitfor
from nectar.config import Settings
from nectar.registry import Run
from nectar.registry.model import RunFilter
from nectar.schedules.model import Fire
from nectar.schedules.times import Timing
from nectar.service import Nectar
from tests.helpers.ledger import whole_lines

#: a task that appends the fire time it was given to a ledger, one write per run to a file opened O_APPEND
TICK_CHAIN = '''
import os

import luigi
from nectar import NectarTask

LEDGER = {ledger!r}


class TickTask(NectarTask):
    """One line per run: the fire time it was made for."""

    when = luigi.DateSecondParameter()
    label = luigi.Parameter(default="tick")

    def run(self):
        fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{{self.label}}@{{self.when.isoformat()}}\\n".encode())
        finally:
            os.close(fd)
        with self.output().open("w") as out:
            out.write("ticked")
'''
TICK = "daily/tick_chain/TickTask"
#: how long a wait may take before the test fails as hung (never a bound on how fast anything is)
PATIENCE = 240.0
#: the registry's listings of runs and fires, whole
EVERYTHING = 1_000_000


def iso(t: float) -> str:
    """A unix time as the ISO 8601 UTC text ``start`` takes."""
    return datetime.fromtimestamp(t, UTC).isoformat()


def ledger_line(t: float, label: str = "tick") -> str:
    """The line the Tick task writes for the fire time ``t`` (its ``when``, a naive UTC date-time)."""
    return f"{label}@{datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat()}"


@dataclass
class Firing:
    """One registry (SQLite in the data folder, or PostgreSQL), the Tick chain, and the clocks and workers
    started on it, each a real process."""

    settings: Settings
    processes: Processes
    ledger: Path
    start_worker: Callable[..., subprocess.Popen[bytes]]

    def __post_init__(self) -> None:
        self.nectar = Nectar(self.settings)
        self.book = self.nectar.schedules
        self.runs = self.nectar.runs

    @property
    def env(self) -> dict[str, str]:
        return {**base_env(), **settings_env(self.settings)}

    def clock(self) -> subprocess.Popen[bytes]:
        """A ``nectar clock`` on this registry; does not wait."""
        return self.processes.start("clock", [*NECTAR, "clock"], self.env)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: the clock ends wherever it is, a transaction open or not."""
        self.processes.kill(proc)

    def workers(self, count: int = 2, each: int = 3) -> None:
        for _ in range(count):
            self.start_worker(self.settings, workers=each)

    def create(self, **definition: Any) -> str:
        """A schedule of Tick made through the API's façade in this process; its id."""
        return str(self.book.create({"task": TICK, "fire_time_param": "when", **definition}).id)

    def fires(self, schedule_id: str) -> list[Fire]:
        return list(self.runs.fires(schedule_id, limit=EVERYTHING))

    def scheduled_runs(self) -> list[Run]:
        runs, _ = self.runs.find(RunFilter(task="TickTask"), limit=EVERYTHING)
        return [run for run in runs if run.schedule_id is not None]

    def executed(self) -> Counter[str]:
        """How many times the task ran for each fire time, from its own ledger."""
        return Counter(whole_lines(self.ledger))

    def wait_fired(self, schedule_id: str, times: list[float], what: str, interval: float = 0.1) -> None:
        """Until a fire exists for each of ``times`` (the clocks alive or not: the failure shows their logs)."""
        wanted = set(times)

        def made() -> bool:
            return wanted <= {fire.fire_time for fire in self.fires(schedule_id)}

        self.wait(made, what, interval)

    def wait_count(self, schedule_id: str, at_least: int, what: str, interval: float = 0.1) -> int:
        """Until ``schedule_id`` has ``at_least`` fires, counted every ``interval`` s; answers how many it had then."""

        def count() -> int:
            made = len(self.fires(schedule_id))
            return made if made >= at_least else 0

        return int(self.wait(count, what, interval))

    def wait(self, predicate: Callable[[], object], what: str, interval: float = 0.1) -> Any:
        """``predicate()`` once true, asked every ``interval`` s: a longer one where it reads hundreds of rows (each
        read is this process's CPU, taken from the clocks and workers on a 2-core machine)."""
        try:
            return waitfor(predicate, PATIENCE, what, interval=interval)
        except AssertionError:
            self.processes.dump_logs()
            raise


#: the Tick chain whose catch-up a clock makes up to a fire time the test holds: its ``complete()``, which a clock
#: calls making each fire, waits while the fire time is at or past the one the gate file names (labels "tick" only)
HELD_TICK = """

import time as _time

GATE = @GATE@


def _held_complete(self):
    while self.label == "tick":
        with open(GATE) as gate:
            if self.when.isoformat() < gate.read():
                break
        _time.sleep(0.01)
    return luigi.Task.complete(self)


TickTask.complete = _held_complete
"""


class Gate:
    """The first fire time of the catch-up a clock may not make yet: it waits inside that fire, whose run is made
    (the task's ``complete()``) but not recorded, until the test moves the gate on or opens it."""

    def __init__(self, firing: Firing, write_chain: Callable[[str, str], Path]) -> None:
        self.path = firing.ledger.with_name("gate.txt")
        self.hold(None)
        chain = TICK_CHAIN.format(ledger=str(firing.ledger)) + HELD_TICK.replace("@GATE@", repr(str(self.path)))
        write_chain("daily/tick_chain", chain)

    def hold(self, fire_time: float | None) -> None:
        """Hold the fires from ``fire_time`` on (None: none), the file written whole (aside, then renamed)."""
        text = ledger_line(fire_time).partition("@")[2] if fire_time is not None else "~"  # "~" sorts after any time
        aside = self.path.with_suffix(".part")
        aside.write_text(text)
        os.replace(aside, self.path)


def when_param(t: float) -> str:
    """A fire time as the run's ``when`` parameter is serialized."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H%M%S")


def assert_once(firing: Firing, schedule_id: str, window: list[float], label: str = "tick") -> list[Fire]:
    """Every fire time of ``window`` has one fire of ``schedule_id`` that queued one run of the task with that
    fire time (none lost, none doubled); answers those fires."""
    inside = set(window)
    fires = [fire for fire in firing.fires(schedule_id) if fire.fire_time in inside]
    assert sorted(fire.fire_time for fire in fires) == window, "a fire time lost or doubled in the fires"
    assert {fire.state for fire in fires} == {"queued"}, Counter((f.state, f.reason) for f in fires)
    timed = [
        (run, t)
        for run in firing.scheduled_runs()
        if run.schedule_id == schedule_id and (t := run.fire_time) is not None and t in inside
    ]
    doubled = [t for t, n in Counter(t for _, t in timed).items() if n > 1]
    assert doubled == [], f"fire times with more than one run: {doubled[:10]}"
    assert sorted(t for _, t in timed) == window, "a fire time without its run"
    assert {fire.run_id for fire in fires} == {run.id for run, _ in timed}
    for run, t in timed:
        assert run.params == {"when": when_param(t), "label": label}, run
    return fires


def past_window(timing: Timing, first: float, count: int) -> list[float]:
    """The ``count`` fire times of ``timing`` from ``first`` on, all past: each is due at once."""
    window = timing.fires_between(first - 1e-3, time.time(), limit=count)
    assert len(window) == count and window[0] == first, window[:3]
    return window
