"""Backfills with a clock the test moves: each fire time of a range once, DONE keys not rerun, max_active kept."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nectar.config import Settings
from nectar.errors import InvalidParameters
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.clock import Clock
from tests.schedules.conftest import on_registry, utc
from tests.schedules.test_policies import DAILY, active_runs, end_run, fires_of, runs_of

PARIS = ZoneInfo("Europe/Paris")
MARCH = [date(2026, 3, 1) + timedelta(days=n) for n in range(31)]
#: the fires of March 3, 6, 9, ... whose day before is already made
ALREADY_DONE = MARCH[2::3][:10]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Every backfill on both registries: the SQL that holds and releases fires is each dialect's."""
    return on_registry(request, settings, request.param)


def make_done(nectar: Nectar, fire_days: list[date]) -> None:
    """Write DailyTask's output for the day before each fire day, as an earlier run would have."""
    info = nectar.task("daily", "sales_chain", "DailyTask")
    for day in fire_days:
        instance = info.instantiate({"date": str(day - timedelta(days=1))})
        with instance.output().open("w") as out:
            out.write("made before")


def days_of(nectar: Nectar, schedule_id: str) -> list[str]:
    return [run.params["date"] for run in runs_of(nectar, schedule_id)]


def test_a_backfill_of_march_runs_the_21_days_not_done_and_reruns_none(nectar: Nectar) -> None:
    assert len(ALREADY_DONE) == 10
    make_done(nectar, ALREADY_DONE)
    backfill = nectar.schedules.backfill(DAILY, "2026-03-01", "2026-03-31T23:59")
    assert len(backfill.fire_times) == 31 and backfill.existing == 0
    by_state = {state: [f for f in backfill.fires if f.state == state] for state in ("queued", "done", "held")}
    assert (len(by_state["queued"]), len(by_state["done"]), len(by_state["held"])) == (21, 10, 0)
    assert {f.backfill_id for f in backfill.fires} == {backfill.id}
    wanted = [str(day - timedelta(days=1)) for day in MARCH if day not in ALREADY_DONE]
    assert days_of(nectar, DAILY) == wanted

    again = nectar.schedules.backfill(DAILY, "2026-03-01", "2026-03-31T23:59")
    assert (again.existing, again.fires) == (31, ())
    assert len(runs_of(nectar, DAILY)) == 21
    assert len(fires_of(nectar, DAILY)) == 31


def test_a_backfill_queues_at_most_max_active_and_later_ticks_release_the_rest(
    nectar: Nectar, loop: ScheduleLoop
) -> None:
    sid = nectar.schedules.create(
        {
            "task": "daily/sales_chain/DailyTask",
            "cron": "0 3 * * *",
            "timezone": "Europe/Paris",
            "fire_time_param": "date",
            "fire_time_offset": "-P1D",
            "max_active": 3,
        }
    ).id
    make_done(nectar, ALREADY_DONE)
    backfill = nectar.schedules.backfill(sid, "2026-03-01", "2026-03-31")
    assert len(backfill.fire_times) == 31
    assert sum(f.state == "queued" for f in backfill.fires) == 3
    assert len(active_runs(nectar, sid)) == 3
    loop.tick()
    assert len(active_runs(nectar, sid)) == 3  # nothing ended: nothing more
    for _ in range(len(MARCH)):
        active = active_runs(nectar, sid)
        if not active:
            break
        end_run(nectar, min(active, key=lambda run: run.fire_time or 0.0).id)
        loop.tick()
        assert len(active_runs(nectar, sid)) <= 3
    fires = fires_of(nectar, sid)
    assert sorted(f.state for f in fires) == ["done"] * 10 + ["queued"] * 21
    wanted = [str(day - timedelta(days=1)) for day in MARCH if day not in ALREADY_DONE]
    assert days_of(nectar, sid) == wanted
    assert [run.queued_at for run in runs_of(nectar, sid)] == sorted(run.queued_at for run in runs_of(nectar, sid))


def test_an_end_given_as_a_date_takes_in_that_whole_day(nectar: Nectar) -> None:
    backfill = nectar.schedules.backfill(DAILY, "2026-03-31", "2026-03-31")
    assert [f.fire_time for f in backfill.fires] == [datetime(2026, 3, 31, 3, tzinfo=PARIS).timestamp()]
    assert days_of(nectar, DAILY) == ["2026-03-30"]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-05-01", "2026-07-01", "in the future"),
        ("2026-03-31", "2026-03-01", "before start"),
    ],
    ids=["end-in-the-future", "start-after-end"],
)
def test_a_backfill_with_a_bad_range_is_refused_naming_end(nectar: Nectar, start: str, end: str, message: str) -> None:
    with pytest.raises(InvalidParameters) as refused:
        nectar.schedules.backfill(DAILY, start, end)
    assert list(refused.value.errors) == ["end"]
    assert message in refused.value.errors["end"][0]
    assert fires_of(nectar, DAILY) == []


def test_a_backfill_runs_the_fires_an_outage_skipped(nectar: Nectar, loop: ScheduleLoop, clock: Clock) -> None:
    sid = nectar.schedules.create(
        {"task": "daily/sales_chain/SlotTask", "cron": "0 3 * * *", "fire_time_param": "when", "catchup": "none"}
    ).id
    clock.now = utc("2026-06-04T01:00")  # no loop ran for 3 days: 3 fires missed, skipped
    loop.tick()
    assert [f.state for f in fires_of(nectar, sid)] == ["skipped"]
    backfill = nectar.schedules.backfill(sid, "2026-06-01", "2026-06-03")
    assert (len(backfill.fire_times), backfill.existing) == (3, 0)
    assert [f.state for f in fires_of(nectar, sid)] == ["queued"] * 3
    assert [run.params["when"] for run in runs_of(nectar, sid)] == [f"2026-06-0{day}T030000" for day in (1, 2, 3)]
