"""The firing loop's policies with a clock the test moves: fire times, catch-up, deadline, overlap, dedupe, edits."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from nectar.config import Settings
from nectar.errors import InvalidParameters
from nectar.registry import Run
from nectar.registry.model import RunFilter, RunState
from nectar.registry.schedules import FireOutcome
from nectar.schedules.loop import CATCHUP_MAX, PASS_FIRES, RETRY_AFTER, ScheduleLoop
from nectar.schedules.model import Fire
from nectar.service import Nectar
from tests.clock import Clock
from tests.helpers.registries import closed_at_end
from tests.schedules.conftest import on_registry, utc

SLOT = "daily/sales_chain/SlotTask"
DAILY = "daily.sales_chain.DailyTask.0"
DAY = 86400.0


@pytest.fixture
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """SQLite's registry, or PostgreSQL's for a test parametrized with ``BOTH_REGISTRIES``."""
    return on_registry(request, settings, getattr(request, "param", "sqlite"))


#: run a test on both registries: the SQL that claims fires and counts active runs is each dialect's
BOTH_REGISTRIES = pytest.mark.parametrize("settings", ["sqlite", "postgresql"], indirect=True)


def make(nectar: Nectar, **fields: Any) -> str:
    """A schedule of SlotTask made over the book (its ``when`` receives the fire time); its id."""
    return nectar.schedules.create({"task": SLOT, "fire_time_param": "when", **fields}).id


def fires_of(nectar: Nectar, schedule_id: str) -> list[Fire]:
    """Every fire of a schedule, oldest first."""
    return sorted(nectar.runs.fires(schedule_id, limit=100_000), key=lambda fire: fire.fire_time)


def runs_of(nectar: Nectar, schedule_id: str) -> list[Run]:
    """Every run a schedule made, by fire time."""
    runs, _ = nectar.runs.find(RunFilter(), limit=100_000)
    return sorted((run for run in runs if run.schedule_id == schedule_id), key=lambda run: run.fire_time or 0.0)


def active_runs(nectar: Nectar, schedule_id: str) -> list[Run]:
    return [run for run in runs_of(nectar, schedule_id) if run.state.active]


def end_run(nectar: Nectar, run_id: str) -> None:
    """End a run as a worker would: claim it, then complete it."""
    run = nectar.runs.claim("test-worker", run_id)
    assert run is not None, f"run {run_id} could not be claimed"
    assert nectar.runs.complete(run.id, run.attempt), f"run {run_id} could not be completed"


def local(zone: str, year: int, month: int, day: int, hour: int = 0) -> float:
    """A wall-clock time in ``zone`` as unix seconds."""
    return datetime(year, month, day, hour, tzinfo=ZoneInfo(zone)).timestamp()


def ticks(loop: ScheduleLoop, clock: Clock, step: float, count: int) -> None:
    """Tick ``count`` times, ``step`` seconds apart."""
    for _ in range(count):
        clock.advance(step)
        loop.tick()


def walk(loop: ScheduleLoop, clock: Clock, until: float, step: float) -> None:
    """Tick after every ``step`` seconds until ``until``."""
    while clock.now < until:
        clock.now = min(until, clock.now + step)
        loop.tick()


# --- 1. fire times and parameters ---


@pytest.mark.parametrize(
    ("first_day", "last_day"),
    [(date(2026, 3, 27), date(2026, 3, 31)), (date(2026, 10, 23), date(2026, 10, 27))],
    ids=["spring-forward", "fall-back"],
)
def test_the_daily_paris_schedule_fires_once_a_day_at_3_with_the_day_before(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, first_day: date, last_day: date
) -> None:
    clock.now = local("Europe/Paris", first_day.year, first_day.month, first_day.day) - 3600 + 30
    loop.tick()  # the file's schedule gets its row: it fires from now on
    end = local("Europe/Paris", last_day.year, last_day.month, last_day.day, 12)
    walk(loop, clock, end, 1800)  # at :00:30 and :30:30 UTC: each 03:00 Paris fire 30 s late, within the grace
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    expected = [local("Europe/Paris", d.year, d.month, d.day, 3) for d in days]
    fires = fires_of(nectar, DAILY)
    assert [f.fire_time for f in fires] == expected
    assert {f.state for f in fires} == {"queued"}
    runs = runs_of(nectar, DAILY)
    assert [run.fire_time for run in runs] == expected
    assert [run.params["date"] for run in runs] == [str(d - timedelta(days=1)) for d in days]


@pytest.mark.parametrize("interval", [60, 7])
def test_an_interval_schedule_fires_at_the_multiples_of_its_interval_without_drift(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, interval: int
) -> None:
    clock.now = utc("2026-06-01T00:00") + 0.7  # between two multiples
    sid = make(nectar, interval_s=interval, timezone="Europe/Paris")  # the zone does not move an interval
    steps = random.Random(19)
    start = clock.now
    while clock.now < start + 3600:
        clock.advance(steps.uniform(0.3, 7.0))
        loop.tick()
    first = (start // interval + 1) * interval
    expected = [first + interval * n for n in range(3600 // interval + 2) if first + interval * n <= clock.now]
    assert [f.fire_time for f in fires_of(nectar, sid)] == expected
    assert {f.state for f in fires_of(nectar, sid)} == {"queued"}
    assert [run.fire_time for run in runs_of(nectar, sid)] == expected
    if interval == 60:  # as wall time in Paris (CEST)
        assert [run.params["when"] for run in runs_of(nectar, sid)][:2] == ["2026-06-01T020100", "2026-06-01T020200"]


@pytest.mark.parametrize(
    ("zone", "day", "count"),
    [
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/Paris", date(2026, 3, 29), 23),
        ("Europe/Paris", date(2026, 10, 25), 25),
    ],
)
def test_an_hourly_cron_fires_every_real_hour_across_a_dst_change(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, zone: str, day: date, count: int
) -> None:
    midnight = local(zone, day.year, day.month, day.day)
    clock.now = midnight - 3600 + 30
    sid = make(nectar, cron="0 * * * *", timezone=zone)
    walk(loop, clock, midnight + 30 * 3600, 1800)  # at :00:30 and :30:30: each fire 30 s late, on time
    assert {f.state for f in fires_of(nectar, sid)} == {"queued"}
    times = [f.fire_time for f in fires_of(nectar, sid)]
    on_the_day = [t for t in times if datetime.fromtimestamp(t, ZoneInfo(zone)).date() == day]
    assert len(on_the_day) == count
    assert all(later - earlier == 3600 for earlier, later in zip(times, times[1:], strict=False))


@pytest.mark.parametrize(
    ("zone", "day", "cron", "fire"),
    [
        ("Europe/Paris", date(2026, 3, 29), "30 2 * * *", "2026-03-29T01:00"),  # 02:30 does not exist: 03:00 CEST
        ("America/New_York", date(2026, 11, 1), "30 1 * * *", "2026-11-01T05:30"),  # 01:30 twice: the first, EDT
    ],
    ids=["paris-gap", "new-york-repeat"],
)
def test_a_daily_schedule_fires_once_on_the_day_its_time_is_skipped_or_repeated(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, zone: str, day: date, cron: str, fire: str
) -> None:
    clock.now = local(zone, day.year, day.month, day.day) - 6 * 3600
    sid = make(nectar, cron=cron, timezone=zone, misfire_grace_s=3600)
    walk(loop, clock, local(zone, day.year, day.month, day.day) + 30 * 3600, 300)
    that_day = [f for f in fires_of(nectar, sid) if datetime.fromtimestamp(f.fire_time, ZoneInfo(zone)).date() == day]
    assert [f.fire_time for f in that_day] == [utc(fire)]
    assert [f.state for f in that_day] == ["queued"]


# --- 2. catch-up after an outage, grace and deadline ---


def outage(nectar: Nectar, loop: ScheduleLoop, clock: Clock, **fields: Any) -> str:
    """A daily 03:00 UTC schedule made at 2026-06-01T00:00; then no loop runs for 3 days (3 fires missed)."""
    sid = make(nectar, cron="0 3 * * *", **fields)
    loop.tick()
    clock.now = utc("2026-06-04T01:00")
    loop.tick()
    return sid


MISSED = [utc("2026-06-01T03:00"), utc("2026-06-02T03:00"), utc("2026-06-03T03:00")]


def test_catchup_none_skips_every_missed_fire_and_fires_the_next(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = outage(nectar, loop, clock, catchup="none")
    assert runs_of(nectar, sid) == []
    fires = fires_of(nectar, sid)
    assert [f.state for f in fires] == ["skipped"]
    assert fires[0].fire_time == MISSED[0]
    assert fires[0].reason is not None
    assert "3 missed fires up to 2026-06-03T03:00" in fires[0].reason and "catchup: none" in fires[0].reason
    clock.now = utc("2026-06-04T03:00:05")
    loop.tick()
    assert [run.fire_time for run in runs_of(nectar, sid)] == [utc("2026-06-04T03:00")]


def test_catchup_latest_makes_one_run_for_the_last_missed_fire(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = outage(nectar, loop, clock, catchup="latest")
    assert [run.fire_time for run in runs_of(nectar, sid)] == [MISSED[-1]]
    assert [run.params["when"] for run in runs_of(nectar, sid)] == ["2026-06-03T030000"]
    states = {f.fire_time: (f.state, f.reason) for f in fires_of(nectar, sid)}
    assert states[MISSED[-1]] == ("queued", None)
    state, reason = states[MISSED[0]]
    assert state == "skipped" and reason is not None and "2 missed fires" in reason and "catchup: latest" in reason


@BOTH_REGISTRIES
def test_catchup_all_makes_a_run_for_each_missed_fire_in_order(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = outage(nectar, loop, clock, catchup="all")
    runs = runs_of(nectar, sid)
    assert [run.fire_time for run in runs] == MISSED
    assert [run.queued_at for run in runs] == sorted(run.queued_at for run in runs)  # made oldest first
    assert [f.state for f in fires_of(nectar, sid)] == ["queued"] * 3
    assert len({run.key for run in runs}) == 3


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_a_fire_within_the_grace_is_on_time_whatever_the_catchup(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, catchup: str
) -> None:
    sid = make(nectar, cron="0 3 * * *", catchup=catchup, misfire_grace_s=120)
    clock.now = utc("2026-06-01T03:01:59")
    loop.tick()
    assert [run.fire_time for run in runs_of(nectar, sid)] == [utc("2026-06-01T03:00")]
    clock.now = utc("2026-06-02T03:02:01")  # past the grace: missed
    loop.tick()
    made = [run.fire_time for run in runs_of(nectar, sid)]
    assert made == [utc("2026-06-01T03:00")] + ([utc("2026-06-02T03:00")] if catchup != "none" else [])


def test_a_fire_later_than_the_starting_deadline_is_skipped_even_with_catchup_all(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = outage(nectar, loop, clock, catchup="all", starting_deadline_s=DAY)
    assert [run.fire_time for run in runs_of(nectar, sid)] == [MISSED[-1]]  # 22 h late: within the day
    fires = fires_of(nectar, sid)
    assert [f.state for f in fires] == ["skipped", "skipped", "queued"]
    for fire in fires[:2]:
        assert fire.reason is not None and "starting deadline (86400s)" in fire.reason


# --- 3. overlap ---


def test_overlap_allow_makes_a_new_run_while_the_last_is_active(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, interval_s=60, overlap="allow")
    clock.advance(60)
    loop.tick()
    clock.advance(60)
    loop.tick()
    runs = runs_of(nectar, sid)
    assert [run.state for run in runs] == [RunState.PENDING, RunState.PENDING]
    assert runs[0].key != runs[1].key


@pytest.mark.parametrize("running", [False, True], ids=["pending", "running"])
def test_overlap_skip_records_the_fire_skipped_naming_the_active_run(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, running: bool
) -> None:
    sid = make(nectar, interval_s=60, overlap="skip")
    clock.advance(60)
    loop.tick()
    (first,) = runs_of(nectar, sid)
    if running:
        assert nectar.runs.claim("test-worker", first.id) is not None
    clock.advance(60)
    loop.tick()
    fires = fires_of(nectar, sid)
    assert [f.state for f in fires] == ["queued", "skipped"]
    assert fires[1].reason is not None and "1 run(s) of this schedule still active" in fires[1].reason
    assert [run.id for run in runs_of(nectar, sid)] == [first.id]


@BOTH_REGISTRIES
def test_overlap_queue_holds_fires_and_queues_them_in_order_as_runs_end(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, interval_s=60, overlap="queue")
    ticks(loop, clock, 60, 3)
    first = clock.now - 120
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "held", "held"]
    loop.tick()  # nothing ended: nothing moves
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "held", "held"]
    for turn in range(1, 3):
        (active,) = active_runs(nectar, sid)
        end_run(nectar, active.id)
        loop.tick()
        (active,) = active_runs(nectar, sid)
        assert active.fire_time == first + 60 * turn
    assert [f.state for f in fires_of(nectar, sid)] == ["queued"] * 3
    assert [run.fire_time for run in runs_of(nectar, sid)] == [first, first + 60, first + 120]


def test_a_paused_schedules_own_held_fires_wait_for_its_resume_while_its_backfills_go_on(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    """Paused, a schedule's fires held by ``overlap: queue`` stay held as its runs end (a pause stops the schedule's
    own fires); a backfill of it, an explicit ask, is queued one at a time as runs end, paused or not (an
    unbounded one queues every fire at once). Resumed, its own held fires go on."""
    sid = make(nectar, interval_s=60, overlap="queue")
    ticks(loop, clock, 60, 2)
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "held"]
    nectar.schedules.change(sid, {"paused": True})
    first = (clock.now // 60 - 10) * 60
    start, end = (datetime.fromtimestamp(t, ZoneInfo("UTC")).isoformat() for t in (first, first + 60))
    backfill = nectar.schedules.backfill(sid, start, end)
    filled = {fire.fire_time for fire in backfill.fires}
    assert len(filled) == 2 and all(fire.state == "held" for fire in backfill.fires)
    for _ in range(3):  # a tick more than the backfill needs: the schedule's own held fire stays held
        for run in active_runs(nectar, sid):
            end_run(nectar, run.id)
        loop.tick()
    fires = fires_of(nectar, sid)
    assert [f.state for f in fires if f.fire_time in filled] == ["queued", "queued"]
    assert [f.state for f in fires if f.fire_time not in filled] == ["queued", "held"]
    assert active_runs(nectar, sid) == []
    nectar.schedules.change(sid, {"paused": False})
    loop.tick()
    assert [f.state for f in fires_of(nectar, sid)] == ["queued"] * 4
    assert [run.fire_time for run in active_runs(nectar, sid)] == [fires[-1].fire_time]


def test_a_held_fire_released_after_its_starting_deadline_is_skipped_naming_it(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, interval_s=60, overlap="queue", starting_deadline_s=90)
    ticks(loop, clock, 60, 3)
    clock.advance(60)  # the second fire is now 120 s old, the third 60 s
    end_run(nectar, runs_of(nectar, sid)[0].id)
    loop.tick()
    fires = fires_of(nectar, sid)
    assert [f.state for f in fires] == ["queued", "skipped", "queued", "held"]
    assert fires[1].reason is not None and "starting deadline (90s)" in fires[1].reason
    assert [run.fire_time for run in active_runs(nectar, sid)] == [fires[2].fire_time]


@BOTH_REGISTRIES
def test_max_active_two_with_allow_holds_the_third_fire_until_one_ends(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, interval_s=60, overlap="allow", max_active=2)
    ticks(loop, clock, 60, 3)
    assert [f.state for f in fires_of(nectar, sid)] == ["queued", "queued", "held"]
    assert len(active_runs(nectar, sid)) == 2
    end_run(nectar, runs_of(nectar, sid)[0].id)
    loop.tick()
    assert [f.state for f in fires_of(nectar, sid)] == ["queued"] * 3
    assert len(active_runs(nectar, sid)) == 2


# --- 4. dedupe ---


def test_a_fire_whose_output_exists_makes_no_run(nectar: Nectar, loop: ScheduleLoop, clock: Clock) -> None:
    sid = make(nectar, interval_s=60, params={"label": "done"})
    info = nectar.task("daily", "sales_chain", "SlotTask")
    instance = info.instantiate({"when": "2026-06-01T000100", "label": "done"})
    with instance.output().open("w") as out:
        out.write("made before")
    clock.advance(60)
    loop.tick()
    (fire,) = fires_of(nectar, sid)
    assert (fire.state, fire.run_id) == ("done", None)
    assert runs_of(nectar, sid) == []


def test_a_fire_joins_the_active_run_a_client_submitted_for_the_same_key(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, interval_s=60)
    submitted = nectar.submit("daily", "sales_chain", "SlotTask", {"when": "2026-06-01T000100"})
    assert submitted.run is not None and submitted.created
    clock.advance(60)
    loop.tick()
    (fire,) = fires_of(nectar, sid)
    assert (fire.state, fire.run_id) == ("queued", submitted.run.id)
    assert fire.reason is not None and "joined" in fire.reason
    runs, _ = nectar.runs.find(RunFilter(), limit=100)
    assert [run.id for run in runs] == [submitted.run.id]


@BOTH_REGISTRIES
def test_a_joined_run_counts_as_the_schedule_s_active_run_for_its_overlap(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, interval_s=60, overlap="skip")
    submitted = nectar.submit("daily", "sales_chain", "SlotTask", {"when": "2026-06-01T000100"})
    assert submitted.run is not None
    clock.advance(60)
    loop.tick()
    clock.advance(60)
    loop.tick()
    fires = fires_of(nectar, sid)
    assert [(f.state, f.run_id) for f in fires] == [("queued", submitted.run.id), ("skipped", None)]
    assert fires[1].reason is not None and "1 run(s) of this schedule still active" in fires[1].reason
    joined = nectar.runs.get(submitted.run.id)
    assert joined is not None and (joined.schedule_id, joined.fire_time) == (sid, fires[0].fire_time)


# --- 5. two loops ---


@BOTH_REGISTRIES
@pytest.mark.parametrize("together", [False, True], ids=["alternately", "at-once"])
def test_two_loops_on_one_registry_make_each_fire_once(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, together: bool
) -> None:
    other = closed_at_end(Nectar(nectar.settings))
    other.schedules.clock = clock.time
    second = ScheduleLoop(other.schedules, clock=clock.time)
    sid = make(nectar, interval_s=1)
    start = clock.now
    steps = random.Random(5)
    loops = [loop, second]
    with ThreadPoolExecutor(2) as threads:
        while clock.now < start + 200:
            clock.now = min(start + 200, clock.now + steps.choice([0.4, 1.0, 1.0, 2.5]))
            steps.shuffle(loops)
            chosen = loops if together else loops[: steps.choice([1, 2])]
            if together:  # both passes at the same time, each in its own thread, as two processes would
                for done in [threads.submit(each.tick) for each in chosen]:
                    done.result()
            else:
                for each in chosen:
                    each.tick()
    loop.tick()
    expected = [start + n for n in range(1, 201)]
    fires = fires_of(nectar, sid)
    assert [f.fire_time for f in fires] == expected
    assert {f.state for f in fires} == {"queued"}
    runs = runs_of(nectar, sid)
    assert len(runs) == 200
    assert [run.fire_time for run in runs] == expected
    assert sorted(str(f.run_id) for f in fires) == sorted(run.id for run in runs)


# --- 6. editing while firing ---


@BOTH_REGISTRIES
def test_a_fire_due_by_the_old_and_the_new_definition_is_made_once(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    other = closed_at_end(Nectar(nectar.settings))
    other.schedules.clock = clock.time
    second = ScheduleLoop(other.schedules, clock=clock.time)
    sid = make(nectar, interval_s=60)
    clock.advance(60)
    loop.tick()
    second.tick()  # both loops know version 1
    old = nectar.runs.schedule(sid)
    assert old is not None and old.version == 1
    clock.advance(60)  # 120 s: due by every 60 s and by every 120 s
    nectar.schedules.change(sid, {"interval_s": 120})
    second.tick()
    loop.tick()
    fires = fires_of(nectar, sid)
    assert [(f.fire_time - fires[0].fire_time, f.version) for f in fires] == [(0, 1), (60, 2)]
    assert len(runs_of(nectar, sid)) == 2
    run = nectar.schedules.prepare(old, clock.now)
    assert nectar.runs.fire(sid, old.version, clock.now, run) == "stale"
    assert nectar.runs.fire(sid, old.version, clock.now + 60, FireOutcome(skip="old")) == "stale"
    assert len(fires_of(nectar, sid)) == 2
    clock.advance(60)  # 180 s: a fire of the old definition only
    loop.tick()
    second.tick()
    assert len(fires_of(nectar, sid)) == 2
    clock.advance(60)
    second.tick()
    loop.tick()
    assert [f.version for f in fires_of(nectar, sid)] == [1, 2, 2]


@pytest.mark.parametrize("field", ["start", "name"])
def test_a_change_of_a_field_only_taken_at_creation_is_refused_naming_it(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, field: str
) -> None:  # start is taken when a schedule is made, name only in a chain file
    sid = make(nectar, interval_s=60)
    with pytest.raises(InvalidParameters) as refused:
        nectar.schedules.change(sid, {field: "2026-06-10T00:00"})
    assert list(refused.value.errors) == [field]
    record = nectar.runs.schedule(sid)
    assert record is not None and (record.version, record.cursor) == (1, clock.now)


# --- 7. pause and resume ---


def test_a_paused_schedule_never_fires_and_resumed_does_not_catch_up(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, cron="0 * * * *", catchup="all")
    nectar.schedules.change(sid, {"paused": True})
    for _ in range(10):
        clock.advance(7 * 3600.0 + 13)
        loop.tick()
    assert fires_of(nectar, sid) == []
    assert nectar.schedules.view(sid).next_fires == ()
    resumed = clock.now
    nectar.schedules.change(sid, {"paused": False})
    loop.tick()
    assert fires_of(nectar, sid) == []
    clock.now = resumed + 2 * 3600
    loop.tick()
    times = [f.fire_time for f in fires_of(nectar, sid)]
    assert times and min(times) > resumed
    assert times == [t for t in (resumed // 3600 * 3600 + 3600 * n for n in (1, 2))]


@pytest.mark.parametrize(("catchup", "made"), [("latest", 1), ("all", CATCHUP_MAX)])
def test_an_outage_longer_than_one_pass_still_catches_up_once_within_the_bound(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, catchup: str, made: int
) -> None:
    sid = make(nectar, interval_s=1, catchup=catchup, misfire_grace_s=0)
    start = clock.now
    missed = PASS_FIRES + 800
    clock.now = start + missed + 0.5
    loop.tick()
    runs = runs_of(nectar, sid)
    assert [run.fire_time for run in runs] == [start + n for n in range(missed - made + 1, missed + 1)]
    skipped = [f for f in fires_of(nectar, sid) if f.state == "skipped"]
    assert skipped and all(f.reason and f"catchup: {catchup}" in f.reason for f in skipped)
    record = nectar.runs.schedule(sid)
    assert record is not None and record.cursor == start + missed


# --- a schedule whose store is down ---

STORES_CHAIN = '''
import luigi
from nectar import NectarTask


class S3SlotTask(NectarTask):
    """Its output in the service's S3 bucket."""

    when = luigi.DateSecondParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.when))


class LocalSlotTask(NectarTask):
    """Its output on this machine's disk, whatever the service's store."""

    store_kind = "local"
    when = luigi.DateSecondParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.when))
'''


def test_a_schedule_whose_store_is_down_does_not_stop_the_others_and_fires_when_it_is_back(
    s3_settings: Settings, s3_env: dict[str, str], write_chain: Callable[[str, str], Path], clock: Clock
) -> None:
    write_chain("daily/stores_chain", STORES_CHAIN)
    service = closed_at_end(Nectar(s3_settings))
    service.schedules.clock = clock.time
    loop = ScheduleLoop(service.schedules, clock=clock.time)
    on_s3, on_disk = (
        service.schedules.create({"task": f"daily/stores_chain/{task}", "interval_s": 60, "fire_time_param": "when"}).id
        for task in ("S3SlotTask", "LocalSlotTask")
    )
    bucket = f"{s3_env['ENV']}.{s3_env['PROJECT_BUCKET']}"
    s3 = boto3.client("s3")
    s3.delete_bucket(Bucket=bucket)
    for _ in range(2):
        clock.advance(60)
        loop.tick()  # the S3 schedule's fires fail (NoSuchBucket): tried again at the next pass
    assert [f.state for f in fires_of(service, on_disk)] == ["queued", "queued"]
    assert fires_of(service, on_s3) == []
    s3.create_bucket(Bucket=bucket)
    clock.advance(RETRY_AFTER)
    loop.tick()
    assert [f.fire_time for f in fires_of(service, on_s3)] == [f.fire_time for f in fires_of(service, on_disk)]
    assert [f.state for f in fires_of(service, on_s3)] == ["queued", "queued"]


@BOTH_REGISTRIES
def test_a_schedule_made_to_start_later_does_not_fire_before_its_start_when_resumed_earlier(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock
) -> None:
    sid = make(nectar, cron="0 3 * * *", start="2026-06-10T00:00", paused=True)
    nectar.schedules.change(sid, {"paused": False})
    assert nectar.schedules.view(sid).next_fires[0] == utc("2026-06-10T03:00")
    clock.now = utc("2026-06-05T03:00:30")
    loop.tick()
    assert fires_of(nectar, sid) == []
    clock.now = utc("2026-06-10T03:00:30")
    loop.tick()
    assert [f.fire_time for f in fires_of(nectar, sid)] == [utc("2026-06-10T03:00")]


FRAGILE_CHAIN = """
import luigi
from nectar import NectarTask, Schedule


class FragileTask(NectarTask):
    schedules = [Schedule(interval_s=60, fire_time_param="when")]
    when = luigi.DateSecondParameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.when.year >= YEAR:
            raise RuntimeError("the warehouse is closed")
"""
FRAGILE = "daily.fragile_chain.FragileTask.0"


def test_a_task_that_raises_when_made_for_a_fire_skips_it_naming_why_and_the_others_fire(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, write_chain: Callable[[str, str], Path]
) -> None:
    """The task's own code raising as it is made for a fire (not a NectarError) skips that fire with the error:
    the loop neither stops nor drops the schedule, and the other schedules fire."""
    write_chain("daily/fragile_chain", FRAGILE_CHAIN.replace("YEAR", "2000"))
    slot = make(nectar, task=SLOT, interval_s=60, fire_time_param="when")
    loop.tick()
    clock.advance(61)
    loop.tick()
    fragile = fires_of(nectar, FRAGILE)
    assert [fire.state for fire in fragile] == ["skipped"]
    assert "RuntimeError: the warehouse is closed" in (fragile[0].reason or "")
    assert [fire.state for fire in fires_of(nectar, slot)] == ["queued"]
    clock.advance(60)
    loop.tick()
    assert [fire.state for fire in fires_of(nectar, FRAGILE)] == ["skipped", "skipped"]


def test_a_task_that_raises_for_every_fire_lists_its_schedule_as_wrong_and_the_chain_works(
    nectar: Nectar, write_chain: Callable[[str, str], Path]
) -> None:
    """Raising whatever the fire time, the schedule is refused beside its chain; the chain file still loads."""
    write_chain("daily/fragile_chain", FRAGILE_CHAIN.replace("YEAR", "0"))
    chain = nectar.chain("daily", "fragile_chain")
    assert chain.schedules == ()
    assert "RuntimeError: the warehouse is closed" in chain.schedule_errors[0]
    assert "FragileTask" in chain.tasks
