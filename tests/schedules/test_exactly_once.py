"""Each fire time made once across real ``nectar clock`` processes: racing on one registry, killed with SIGKILL
mid-fire and restarted, stopped by SIGTERM or frozen mid-fire, while the schedule is edited or paused; executions
counted from the task itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness import NECTAR, Processes, base_env, settings_env
from harness.processes import waitfor
from nectar.config import Settings, configure
from nectar.registry import Run
from nectar.registry.model import RunFilter, RunState
from nectar.schedules.model import Fire
from nectar.schedules.times import Timing
from nectar.service import Nectar

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
        text = self.ledger.read_text() if self.ledger.exists() else ""
        return Counter(text.splitlines())

    def wait_fired(self, schedule_id: str, times: list[float], what: str) -> None:
        """Until a fire exists for each of ``times`` (the clocks alive or not: the failure shows their logs)."""
        wanted = set(times)

        def made() -> bool:
            return wanted <= {fire.fire_time for fire in self.fires(schedule_id)}

        self.wait(made, what)

    def wait_count(self, schedule_id: str, at_least: int, what: str) -> int:
        """Until ``schedule_id`` has ``at_least`` fires; answers how many it had then."""

        def count() -> int:
            made = len(self.fires(schedule_id))
            return made if made >= at_least else 0

        return int(self.wait(count, what))

    def wait(self, predicate: Callable[[], object], what: str) -> Any:
        try:
            return waitfor(predicate, PATIENCE, what, interval=0.1)
        except AssertionError:
            self.processes.dump_logs()
            raise


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings of a registry of each kind: SQLite in the data folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return settings
    value = settings.replace(database_url=request.getfixturevalue("database_url"))
    configure(value)
    return value


@pytest.fixture
def firing(
    registry: Settings,
    write_chain: Callable[[str, str], Path],
    processes: Processes,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Firing:
    ledger = tmp_path / "ledger.txt"
    write_chain("daily/tick_chain", TICK_CHAIN.format(ledger=str(ledger)))
    return Firing(registry, processes, ledger, start_worker)


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
    runs = [run for run in firing.scheduled_runs() if run.schedule_id == schedule_id and run.fire_time in inside]
    doubled = [t for t, n in Counter(run.fire_time for run in runs).items() if n > 1]
    assert doubled == [], f"fire times with more than one run: {doubled[:10]}"
    assert sorted(run.fire_time for run in runs) == window, "a fire time without its run"  # type: ignore[type-var]
    assert {fire.run_id for fire in fires} == {run.id for run in runs}
    for run in runs:
        assert run.params == {"when": when_param(run.fire_time), "label": label}, run  # type: ignore[arg-type]
    return fires


def past_window(timing: Timing, first: float, count: int) -> list[float]:
    """The ``count`` fire times of ``timing`` from ``first`` on, all past: each is due at once."""
    window = timing.fires_between(first - 1e-3, time.time(), limit=count)
    assert len(window) == count and window[0] == first, window[:3]
    return window


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_three_clocks_on_postgresql_one_killed_make_500_fire_times_500_executions(firing: Firing) -> None:
    """The issue's check: 500 past fire times caught up at once by three racing clocks, one SIGKILLed mid-way;
    the task ran once for each, counted from its own ledger, and the registry agrees."""
    start = float(int(time.time()) - 510)  # the 500th fire time is past: every counted one is due at once
    window = past_window(Timing.parse(None, 1, "UTC"), start, 500)
    firing.workers(count=2, each=3)
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    doomed, *_ = (firing.clock(), firing.clock(), firing.clock())

    made = firing.wait_count(sid, 100, "100 fires to be made")
    firing.kill(doomed)
    firing.wait_fired(sid, window, "the 500 fire times to be made by the two clocks left")
    firing.book.change(sid, {"paused": True})  # the later fires are on time and not counted: no need for them

    def ended() -> bool:
        runs = [run for run in firing.scheduled_runs() if run.fire_time in set(window)]
        return len(runs) >= 500 and all(run.state not in (RunState.PENDING, RunState.RUNNING) for run in runs)

    firing.wait(ended, "the 500 runs to end")
    assert made < 500, f"the clock was killed after the catch-up ended ({made} fires made)"
    wanted = {ledger_line(t) for t in window}
    executed = {line: n for line, n in firing.executed().items() if line in wanted}
    assert sorted(wanted - set(executed)) == [], "fire times never executed"
    assert {line: n for line, n in executed.items() if n != 1} == {}, "fire times executed more than once"
    assert_once(firing, sid, window)
    assert {run.state for run in firing.scheduled_runs() if run.fire_time in set(window)} == {RunState.DONE}


def test_two_clocks_make_an_hour_of_fires_once_each(firing: Firing) -> None:
    """An hour of fires of two schedules (every 10 s: 360; every minute by cron: 60), caught up by two racing
    clocks, each fire time exactly once; a worker executes some of them, none twice."""
    now = time.time()
    every_10s, minutely = Timing.parse(None, 10, "UTC"), Timing.parse("* * * * *", None, "UTC")
    tens = past_window(every_10s, float(int(now) // 10 * 10 - 3600), 360)
    minutes = past_window(minutely, float(int(now) // 60 * 60 - 3600), 60)
    firing.workers(count=1, each=2)
    by_10s = firing.create(interval_s=10, catchup="all", start=iso(tens[0]))
    by_cron = firing.create(cron="* * * * *", catchup="all", start=iso(minutes[0]), params={"label": "cron"})
    firing.clock(), firing.clock()

    firing.wait_fired(by_10s, tens, "the 360 fire times every 10 s")
    firing.wait_fired(by_cron, minutes, "the 60 fire times every minute")
    firing.wait(lambda: sum(firing.executed().values()) >= 20, "a worker to execute 20 of the runs")

    assert_once(firing, by_10s, tens)
    assert_once(firing, by_cron, minutes, label="cron")
    executed = firing.executed()
    assert {line: n for line, n in executed.items() if n != 1} == {}, "fire times executed more than once"
    made = {ledger_line(t) for t in tens} | {ledger_line(t, "cron") for t in minutes}
    made |= {ledger_line(t) for t in every_10s.fires_between(tens[-1], time.time())}
    made |= {ledger_line(t, "cron") for t in minutely.fires_between(minutes[-1], time.time())}
    assert set(executed) <= made, "an execution of no fire time"


def test_a_clock_killed_mid_fire_three_times_and_restarted_loses_and_doubles_nothing(firing: Firing) -> None:
    """One clock catching up 600 missed fire times, SIGKILLed three times while it makes them: the clock
    started after it makes the rest, every fire time once."""
    start = float(int(time.time()) - 610)
    window = past_window(Timing.parse(None, 1, "UTC"), start, 600)
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    killed_at = []
    for _ in range(3):
        before = len(firing.fires(sid))
        clock = firing.clock()
        made = firing.wait_count(sid, before + 10, "the restarted clock to make 10 fires")
        firing.kill(clock)
        killed_at.append(made)
    firing.clock()
    firing.wait_fired(sid, window, "the 600 fire times to be made after the third restart")

    assert killed_at == sorted(killed_at) and killed_at[-1] < 600, f"killed after the catch-up: {killed_at}"
    assert_once(firing, sid, window)


def test_a_schedule_edited_while_two_clocks_fire_it_fires_each_time_by_one_version(firing: Firing) -> None:
    """Its interval changed from 1 s to 2 s while two clocks catch it up: the fire times up to the edit are the
    old version's, every second; the later ones the new version's, every other second; none by both, none lost."""
    start = float(int(time.time()) - 810) // 2 * 2
    old, new = Timing.parse(None, 1, "UTC"), Timing.parse(None, 2, "UTC")
    end = start + 798
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    firing.clock(), firing.clock()

    firing.wait(lambda: len(firing.fires(sid)) >= 50, "50 fires of the first version")
    edited = firing.book.change(sid, {"interval_s": 2})
    assert edited.spec.timing.interval_s == 2
    firing.wait(
        lambda: any(f.version == 2 and f.fire_time >= end for f in firing.fires(sid)),
        "the second version to fire up to the end of the window",
    )

    fires = [fire for fire in firing.fires(sid) if fire.fire_time <= end]
    assert {fire.version for fire in fires} == {1, 2}
    last_old = max(fire.fire_time for fire in fires if fire.version == 1)
    assert last_old < end - 200, f"the edit came after the catch-up ({last_old})"
    olds = old.fires_between(start - 1e-3, last_old)
    news = new.fires_between(last_old, end)
    assert_once(firing, sid, olds + news)
    assert sorted(fire.fire_time for fire in fires if fire.version == 1) == olds
    assert sorted(fire.fire_time for fire in fires if fire.version == 2) == news


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
def test_a_clock_stopped_by_sigterm_mid_catch_up_exits_after_the_fire_it_makes(firing: Firing) -> None:
    """SIGTERM while a clock catches up 900 missed fire times: it exits at once, not after the whole pass (which
    nectar serve, waiting for its parts, would end with SIGKILL); the next clock makes the rest, once each."""
    start = float(int(time.time()) - 910)
    window = past_window(Timing.parse(None, 1, "UTC"), start, 900)
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    clock = firing.clock()
    firing.wait_count(sid, 30, "the clock to make 30 fires")

    clock.send_signal(signal.SIGTERM)

    assert clock.wait(timeout=PATIENCE) == 0
    stopped_at = len(firing.fires(sid))
    assert stopped_at < 900, f"the clock ended its pass ({stopped_at} fires) before it stopped"
    firing.clock()
    firing.wait_fired(sid, window, "the next clock to make the rest")
    assert_once(firing, sid, window)


def test_a_schedule_paused_mid_catch_up_makes_no_more_fires(firing: Firing) -> None:
    """Paused while a clock catches up 900 missed fire times, it makes none after the pause but the one in flight
    (the clock does not finish the pass it began); another schedule, on time, shows the clock went on."""
    start = float(int(time.time()) - 910)
    paused = firing.create(interval_s=1, catchup="all", start=iso(start))
    witness = firing.create(interval_s=1, params={"label": "witness"})
    firing.clock()
    firing.wait_count(paused, 30, "the clock to make 30 fires of the catch-up")

    firing.book.change(paused, {"paused": True})
    paused_at = time.time()

    firing.wait(
        lambda: any(fire.recorded_at > paused_at for fire in firing.fires(witness)),
        "the clock to fire the other schedule after the pause",
    )
    after = [fire.fire_time for fire in firing.fires(paused) if fire.recorded_at > paused_at]
    assert len(after) <= 1, f"{len(after)} fires made after the pause"


#: a process that takes what a clock's fire takes first, the schedule's row lock, and freezes (SIGSTOP) holding it:
#: a clock frozen mid-fire, or cut from the database by the network, as the server sees it
FROZEN_MID_FIRE = """
import os, signal, sys
from nectar.registry.postgres import PostgresRunStore

store = PostgresRunStore(sys.argv[1])
with store._db() as db:
    store._locked_version(db, sys.argv[2])
    print("holding the schedule's row", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_a_clock_frozen_mid_fire_on_postgresql_does_not_stop_the_others(firing: Firing) -> None:
    """The server ends the transaction of a clock frozen holding a schedule's row (it would hold it until the
    clock thawed or its TCP connection timed out, hours later): the other clocks fire on, no fire time lost."""
    sid = firing.create(interval_s=1, catchup="all")
    firing.clock(), firing.clock()
    firing.wait_count(sid, 2, "two fires before the freeze")
    first = min(fire.fire_time for fire in firing.fires(sid))
    frozen = firing.processes.start(
        "frozen", [sys.executable, "-c", FROZEN_MID_FIRE, str(firing.settings.database_url), sid], firing.env
    )
    log = firing.processes.log_of[frozen.pid]
    firing.wait(lambda: "holding" in log.read_text(), "the frozen process to hold the schedule's row")
    frozen_at = time.time()

    firing.wait(
        lambda: any(fire.fire_time > frozen_at + 1 for fire in firing.fires(sid)),
        "the clocks to make a fire after the freeze (none can while the frozen process holds the row)",
    )

    assert frozen.poll() is None  # still frozen: the server, not a thaw, let the clocks go on
    last = max(fire.fire_time for fire in firing.fires(sid))
    assert_once(firing, sid, Timing.parse(None, 1, "UTC").fires_between(first - 1e-3, last))
