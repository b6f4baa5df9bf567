"""Each fire time made once across real ``nectar clock`` processes on SQLite and PostgreSQL: an hour of fires by
two clocks, the schedule edited or paused mid-catch-up (a clock killed or stopped: ``test_clock_stops.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.schedules.times import Timing
from tests.schedules.firing import (
    Firing,
    Gate,
    assert_once,
    iso,
    ledger_line,
    past_window,
)


# SQLite only: on PostgreSQL, test_exactly_once.py's three racing clocks (one killed) make 500 fire times once each,
# executions counted, which proves more than two clocks do there; cron and interval timings are no dialect's
@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
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


def test_a_schedule_edited_while_two_clocks_fire_it_fires_each_time_by_one_version(
    firing: Firing, write_chain: Callable[[str, str], Path]
) -> None:
    """Its interval changed from 1 s to 2 s while two clocks catch it up: the fire times up to the edit are the
    old version's, every second; the later ones the new version's, every other second; none by both, none lost.
    The clocks are held 300 fire times in until the edit is made (free, they could make the ~550 more fires before
    the end of the window in the moment between the test's count and its edit)."""
    gate = Gate(firing, write_chain)
    start = float(int(time.time()) - 810) // 2 * 2
    old, new = Timing.parse(None, 1, "UTC"), Timing.parse(None, 2, "UTC")
    end = start + 798
    gate.hold(start + 300)
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    firing.clock(), firing.clock()

    firing.wait(lambda: len(firing.fires(sid)) >= 50, "50 fires of the first version")
    edited = firing.book.change(sid, {"interval_s": 2})
    assert edited.spec.timing.interval_s == 2
    gate.hold(None)
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


def test_a_schedule_paused_mid_catch_up_makes_no_more_fires(
    firing: Firing, write_chain: Callable[[str, str], Path]
) -> None:
    """Paused while a clock catches up 900 missed fire times, it makes none after the pause but the one in flight
    (the clock does not finish the pass it began); another schedule, on time, shows the clock went on. The clock is
    held 300 fire times in until the pause is made (free, it could end the catch-up before it)."""
    gate = Gate(firing, write_chain)
    start = float(int(time.time()) - 910)
    gate.hold(start + 300)
    paused = firing.create(interval_s=1, catchup="all", start=iso(start))
    witness = firing.create(interval_s=1, params={"label": "witness"})
    firing.clock()
    firing.wait_count(paused, 30, "the clock to make 30 fires of the catch-up")

    firing.book.change(paused, {"paused": True})
    paused_at = time.time()
    gate.hold(None)

    firing.wait(
        lambda: any(fire.recorded_at > paused_at for fire in firing.fires(witness)),
        "the clock to fire the other schedule after the pause",
    )
    after = [fire.fire_time for fire in firing.fires(paused) if fire.recorded_at > paused_at]
    assert len(after) <= 1, f"{len(after)} fires made after the pause"
