"""/metrics over the test client: runs by state and queue depth from the registry, durations by task, HTTP latency."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from nectar.config import Settings
from nectar.registry import Run, sql
from nectar.registry.sqlite import SQLiteRunStore
from tests.clock import Clock

DIGEST = "0123456789abcdef0123456789abcdef"


def scrape(client: FlaskClient) -> dict:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    return {family.name: family for family in text_string_to_metric_families(answer.get_data(as_text=True))}


def queue(runs: SQLiteRunStore, task: str, n: int) -> Run:
    run = Run.new(f"chains/t/c_chain/{task}/{DIGEST}/out.txt#{n}", "t", "c_chain", task, {}, f"{task}_{n}")
    return runs.submit(run)[0]


def test_runs_by_state_queue_depth_and_durations_come_from_the_registry(
    client: FlaskClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the registry's time stands still: a run's duration is 0 s, in the 0.5 s bucket, however slow the machine
    Clock(time.time()).install(monkeypatch, sql)
    runs = SQLiteRunStore(settings.registry_path)
    for n in range(3):
        queue(runs, "ATask", n)
    for n in range(2):
        queue(runs, "BTask", n)
    done = runs.claim("w")
    failed = runs.claim("w")
    running = runs.claim("w")
    assert done and failed and running
    runs.complete(done.id, done.attempt)
    runs.fail(failed.id, failed.attempt, "ATask", "boom")

    families = scrape(client)

    by_state = {s.labels["state"]: s.value for s in families["nectar_runs"].samples}
    assert by_state == {"PENDING": 2, "RUNNING": 1, "DONE": 1, "FAILED": 1, "CANCELLED": 0, "WAITING": 0}
    assert families["nectar_queue_depth"].samples[0].value == 2
    samples = families["nectar_run_duration_seconds"].samples
    count = {s.labels["task"]: s.value for s in samples if s.name.endswith("_count")}
    assert count == {"t/c_chain/ATask": 2}  # the done and the failed one; queued and running runs have no duration
    fast = [s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "0.5"]
    assert fast == [2]


def test_every_request_is_timed_by_its_route(client: FlaskClient) -> None:
    for _ in range(3):
        client.get("/api/chains/testchains")
    client.get("/api/chains/nope")

    samples = scrape(client)["nectar_http_request_duration_seconds"].samples

    counts = {
        (s.labels["method"], s.labels["endpoint"], s.labels["status"]): s.value
        for s in samples
        if s.name.endswith("_count")
    }
    assert counts[("GET", "/api/chains/<chain_type>", "200")] >= 3
    assert counts[("GET", "/api/chains/<chain_type>", "404")] >= 1
