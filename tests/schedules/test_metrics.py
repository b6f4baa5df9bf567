"""/metrics after the firing loop ran with a moved clock: schedules by source and paused, fires by state (a
3-day outage leaves skipped fires), and the lag from fire time to run queued."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nectar.config import Settings
from nectar.metrics import LAG_BUCKETS
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.clock import Clock

DAILY = "daily.sales_chain.DailyTask.0"
SLOT = "daily/sales_chain/SlotTask"
#: an outage of 3 days and a half hour: every fire since is more than its grace late
OUTAGE = 3 * 86400 + 1800


def scrape(settings: Settings) -> dict:
    answer = build_app(settings).test_client().get("/metrics")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return {family.name: family for family in text_string_to_metric_families(answer.get_data(as_text=True))}


def test_fires_by_state_lag_and_schedules_after_a_3_day_outage(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, settings: Settings
) -> None:
    hourly = nectar.schedules.create({"task": SLOT, "interval_s": 3600, "fire_time_param": "when", "catchup": "none"})
    nectar.schedules.create({"task": SLOT, "cron": "0 * * * *", "fire_time_param": "when", "paused": True})
    loop.tick()  # the file schedule's row is made; nothing is due yet
    clock.advance(OUTAGE)
    loop.tick()

    families = scrape(settings)

    schedules = {(s.labels["source"], s.labels["paused"]): s.value for s in families["nectar_schedules"].samples}
    assert schedules == {("file", "false"): 1, ("file", "true"): 0, ("api", "false"): 1, ("api", "true"): 1}
    # the daily 03:00 Paris fire (01:00 UTC in June) missed 3 times, catch-up latest: the last made, the two others
    # skipped as one; the hourly one, catch-up none: its 72 missed fires skipped as one
    daily = nectar.runs.fires(DAILY)
    assert sorted(fire.state for fire in daily) == ["queued", "skipped"], daily
    assert [fire.state for fire in nectar.runs.fires(hourly.id)] == ["skipped"]
    fires = {s.labels["state"]: s.value for s in families["nectar_schedule_fires"].samples}
    assert fires == {"queued": 1, "done": 0, "skipped": 2, "held": 0}

    # queued at the end of the outage, on the loop's clock: its lag is exactly the clock's distance from its fire time
    queued = next(fire for fire in daily if fire.state == "queued")
    assert queued.lag == clock.now - queued.fire_time
    samples = families["nectar_schedule_lag_seconds"].samples
    value = {(s.name, s.labels.get("le")): s.value for s in samples}
    assert value["nectar_schedule_lag_seconds_count", None] == 1
    assert value["nectar_schedule_lag_seconds_sum", None] == queued.lag
    assert value["nectar_schedule_lag_seconds_bucket", "+Inf"] == 1
    assert [value["nectar_schedule_lag_seconds_bucket", str(b)] for b in LAG_BUCKETS] == [
        1 if queued.lag <= b else 0 for b in LAG_BUCKETS
    ]


def test_each_lag_falls_in_its_buckets(nectar: Nectar, loop: ScheduleLoop, clock: Clock, settings: Settings) -> None:
    """Fires queued 0.03 s and 2.5 s after their times (the loop's clock, moved by the test) are counted in every
    bucket they fit: 0.03 in all, 2.5 from the 2.5 bucket on."""
    made = nectar.schedules.create({"task": SLOT, "interval_s": 60, "fire_time_param": "when"})
    loop.tick()
    clock.now = made.next_fires[0] + 0.03
    loop.tick()
    clock.now += 60 - 0.03 + 2.5
    loop.tick()
    assert sorted(fire.lag or 0.0 for fire in nectar.runs.fires(made.id)) == pytest.approx([0.03, 2.5])

    samples = scrape(settings)["nectar_schedule_lag_seconds"].samples
    value = {(s.name, s.labels.get("le")): s.value for s in samples}
    assert value["nectar_schedule_lag_seconds_count", None] == 2
    assert value["nectar_schedule_lag_seconds_sum", None] == pytest.approx(2.53)
    assert [value["nectar_schedule_lag_seconds_bucket", str(b)] for b in LAG_BUCKETS] == [
        1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2
    ]  # fmt: skip


def test_a_service_without_schedules_reports_zeros(settings: Settings) -> None:
    families = scrape(settings)

    assert {s.value for s in families["nectar_schedules"].samples} == {0}
    assert {s.labels["state"]: s.value for s in families["nectar_schedule_fires"].samples} == {
        "queued": 0,
        "done": 0,
        "skipped": 0,
        "held": 0,
    }
    assert [s.value for s in families["nectar_schedule_lag_seconds"].samples if s.name.endswith("_count")] == [0]
