"""/metrics after trigger loops ran with a moved clock: triggers by source and paused, objects by state, runs made,
the detection lag (an object's change, its mtime set by the test, to its claim, on the loop's clock) and WAITING runs
counted with the other states."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.metrics import DETECTION_BUCKETS
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.clock import Clock
from tests.schedules.test_metrics import scrape
from tests.triggers.test_api import FILE_TRIGGER, LOAD_FILE
from tests.triggers.test_core import declared, land, landing, nectar  # noqa: F401  (fixtures)

#: when the test's objects change (unix seconds, whole: a file's mtime keeps it exactly)
CHANGED = 1_780_000_000


def landed_at(folder: Path, name: str, mtime: float) -> str:
    (path,) = land(folder, name)
    os.utime(path, (mtime, mtime))
    return path


def test_triggers_objects_runs_and_each_lag_in_its_buckets(
    settings: Settings,
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    declared: Path,  # noqa: F811
) -> None:
    clock = Clock(CHANGED + 0.3)
    nectar.triggers.clock = clock.time
    made = nectar.triggers.create({"task": LOAD_FILE, "prefix": str(landing), "param": "path"})
    nectar.triggers.create({"task": LOAD_FILE, "prefix": str(landing), "param": "path", "paused": True})
    landed_at(declared, "a.csv", CHANGED)
    loop = TriggerLoop(nectar.triggers, clock=clock.time)
    loop.tick()  # the file trigger (existing: all) claims a.csv 0.3 s after it changed
    landed_at(landing, "b.csv", CHANGED + 100)
    clock.now = CHANGED + 112.5
    loop.tick()  # the API's active trigger claims b.csv 12.5 s after it changed
    lags = {t: [o.lag for o in nectar.runs.trigger_objects(t)] for t in (FILE_TRIGGER, made.id)}
    assert lags == {FILE_TRIGGER: [pytest.approx(0.3)], made.id: [pytest.approx(12.5)]}

    families = scrape(settings)

    triggers = {(s.labels["source"], s.labels["paused"]): s.value for s in families["nectar_triggers"].samples}
    assert triggers == {("file", "false"): 1, ("file", "true"): 0, ("api", "false"): 1, ("api", "true"): 1}
    objects = {s.labels["state"]: s.value for s in families["nectar_trigger_objects"].samples}
    assert objects == {"queued": 2, "done": 0, "skipped": 0}
    assert [s.value for s in families["nectar_trigger_runs"].samples] == [2]
    value = {(s.name, s.labels.get("le")): s.value for s in families["nectar_trigger_detection_lag_seconds"].samples}
    assert value["nectar_trigger_detection_lag_seconds_count", None] == 2
    assert value["nectar_trigger_detection_lag_seconds_sum", None] == pytest.approx(12.8)
    assert value["nectar_trigger_detection_lag_seconds_bucket", "+Inf"] == 2
    assert [value["nectar_trigger_detection_lag_seconds_bucket", str(b)] for b in DETECTION_BUCKETS] == [
        0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2
    ]  # fmt: skip
    runs = {s.labels["state"]: s.value for s in families["nectar_runs"].samples}
    assert (runs["PENDING"], runs["WAITING"]) == (2, 0)


def test_a_service_without_triggers_reports_zeros(settings: Settings) -> None:
    families = scrape(settings)

    assert {s.value for s in families["nectar_triggers"].samples} == {0}
    objects = {s.labels["state"]: s.value for s in families["nectar_trigger_objects"].samples}
    assert objects == {"queued": 0, "done": 0, "skipped": 0}
    assert [s.value for s in families["nectar_trigger_runs"].samples] == [0]
    samples = families["nectar_trigger_detection_lag_seconds"].samples
    assert [s.value for s in samples if s.name.endswith("_count")] == [0]
    assert {s.labels["state"] for s in families["nectar_runs"].samples} >= {"WAITING"}
