"""Each fire time made once across real ``nectar clock`` processes: 500 past fire times executed once by three
clocks racing on PostgreSQL, one SIGKILLed; a clock frozen mid-fire does not stop the others. Executions counted
from the task itself."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.registry.model import RunState
from nectar.schedules.times import Timing
from tests.schedules.firing import (
    Firing,
    Gate,
    assert_once,
    iso,
    ledger_line,
    past_window,
)


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_three_clocks_on_postgresql_one_killed_make_500_fire_times_500_executions(
    firing: Firing, write_chain: Callable[[str, str], Path]
) -> None:
    """The issue's check: 500 past fire times caught up at once by three racing clocks, one SIGKILLed mid-way
    (held 300 fire times in until then: free, they could end the catch-up before a slow test's kill); the task ran
    once for each, counted from its own ledger, and the registry agrees."""
    gate = Gate(firing, write_chain)
    start = float(int(time.time()) - 510)  # the 500th fire time is past: every counted one is due at once
    window = past_window(Timing.parse(None, 1, "UTC"), start, 500)
    gate.hold(window[300])
    firing.workers(count=2, each=3)
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    doomed, *_ = (firing.clock(), firing.clock(), firing.clock())

    made = firing.wait_count(sid, 100, "100 fires to be made")
    firing.kill(doomed)
    gate.hold(None)
    firing.wait_fired(sid, window, "the 500 fire times to be made by the two clocks left", interval=0.5)
    firing.book.change(sid, {"paused": True})  # the later fires are on time and not counted: no need for them

    def ended() -> bool:
        runs = [run for run in firing.scheduled_runs() if run.fire_time in set(window)]
        return len(runs) >= 500 and all(run.state not in (RunState.PENDING, RunState.RUNNING) for run in runs)

    firing.wait(ended, "the 500 runs to end", interval=0.5)
    assert made < 500, f"the clock was killed after the catch-up ended ({made} fires made)"
    wanted = {ledger_line(t) for t in window}
    executed = {line: n for line, n in firing.executed().items() if line in wanted}
    assert sorted(wanted - set(executed)) == [], "fire times never executed"
    assert {line: n for line, n in executed.items() if n != 1} == {}, "fire times executed more than once"
    assert_once(firing, sid, window)
    assert {run.state for run in firing.scheduled_runs() if run.fire_time in set(window)} == {RunState.DONE}


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
    frozen.kill()  # a stopped process takes no SIGTERM: the harness would wait out its stop timeout
    frozen.wait()
