"""/metrics over the test client: runs by state and queue depth from the registry, durations by task, HTTP latency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from harness import Processes, lifeline_env
from nectar.config import Settings
from nectar.registry import Run, sql
from nectar.registry.sqlite import SQLiteRunStore
from tests.clock import Clock
from tests.helpers.registries import closed_at_end

REPOSITORY = Path(__file__).resolve().parents[2]
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
    runs = closed_at_end(SQLiteRunStore(settings.registry_path))
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


_FORKED = """
import os, sys
from nectar import forks
import api.metrics
from prometheus_client import multiprocess, CollectorRegistry

timer = api.metrics.HTTP_LATENCY.labels("GET", "/x", "200")
timer.observe(0.001)
child = os.fork()
if child == 0:
    timer.observe(0.001)
    timer.observe(0.001)
    os._exit(0)
os.waitpid(child, 0)
forks._pid = 4242  # what nectar says the process is: the values' files go by it
timer.observe(0.001)
print(os.getpid(), child)
"""


def test_a_forked_childs_latencies_are_its_own_in_files_named_by_nectars_pid(tmp_path: Path) -> None:
    """With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn's workers), each process writes its latencies to files of its
    own, named by the process as :func:`nectar.forks.pid` says (no ``getpid`` a value): a child forked after the
    parent observed one writes its own two, not the parent's file; the parent's next goes where nectar's pid says."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _FORKED],
        cwd=REPOSITORY,
        env={**os.environ, **lifeline_env(), "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    parent, child = done.stdout.split()
    counts = {}  # observations in each file: its buckets' (each observation is in one, raw, not cumulative)
    for name in os.listdir(folder):
        values = MmapedDict(str(folder / name), read_mode=True)
        counts[name] = sum(
            value for key, value, _ in values.read_all_values() if json.loads(key)[1].endswith("_bucket")
        )
        values.close()
    assert counts == {f"histogram_{parent}.db": 1, f"histogram_{child}.db": 2, "histogram_4242.db": 1}, counts


def test_a_scrape_skips_an_empty_file_a_worker_left_as_it_was_killed_saying_so_once(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """A gunicorn worker killed as it created its prometheus file (made, its size still 0: prometheus_client opens it,
    then sizes it) leaves it empty for good; prometheus_client's reader unpacks its header from it and raised
    (``struct.error``), so every scrape answered 500. Each scrape now skips it and counts the other files, and the API
    says so once at WARNING, naming the file. The file is made empty here, as the kill leaves it (a worker cannot be
    killed between those two calls on purpose)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    served = processes.nectar_api(settings, env={"PROMETHEUS_MULTIPROC_DIR": str(folder)})
    left = folder / "histogram_999999.db"
    left.touch()
    for _ in range(3):
        answer = urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=60)  # noqa: S310 - ours
        assert answer.status == 200
        families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        assert families["nectar_http_request_duration_seconds"].samples  # the workers' own files, counted
    said = [line for line in processes.logs.joinpath("api-0.log").read_text().splitlines() if str(left) in line]
    assert len(said) == 1 and "WARNING" in said[0], said
