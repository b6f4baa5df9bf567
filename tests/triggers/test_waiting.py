"""WAITING runs: an absent external input puts a run to wait holding no worker; the wait loop wakes it, or ends it.

The loop's logic runs against a registry with a clock the test moves (:meth:`WaitLoop.tick`, no sleeping); the
issue's check runs real processes: luigid, one ``nectar worker`` with one slot, and ``nectar clock``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import luigi
import pytest
from flask.testing import FlaskClient

from harness import NECTAR, Processes, base_env, settings_env, waitfor
from nectar.attempt import InvalidMaxRuntime, process_name, wait_timeout
from nectar.config import Settings
from nectar.errors import StoreUnavailable
from nectar.executor import run_in_foreground
from nectar.registry import Run, RunFilter, RunState, RunStore, Step, waits_sql
from nectar.service import Nectar
from nectar.stores.listing import exists as _exists
from nectar.waiting import WaitLoop
from tests.api.conftest import build_app
from tests.clock import Clock
from tests.helpers.registries import closed_at_end

WriteChain = Callable[[str, str], Path]
START = 1_780_000_000.0

LANDING_CHAIN = """import luigi


class LandedFile(luigi.ExternalTask):
    path = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(self.path)


class LoadTask(luigi.Task):
    path = luigi.Parameter()
    n = luigi.IntParameter()
    out = luigi.Parameter()

    def requires(self):
        return LandedFile(path=self.path)

    def output(self):
        return luigi.LocalTarget(f"{self.out}/load-{self.n}.txt")

    def run(self):
        with self.input().open() as landed, self.output().open("w") as out:
            out.write(landed.read())


class ImpatientLoadTask(LoadTask):
    wait_timeout = 2


class QuickTask(luigi.Task):
    out = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"{self.out}/quick.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("quick")
"""


# --- how long a run waits -------------------------------------------------------------------------


class PatientTask(luigi.Task):
    wait_timeout = 90


class VaguelyPatientTask(luigi.Task):
    wait_timeout = "a while"


def test_a_runs_wait_is_bounded_by_its_tasks_wait_timeout_else_the_setting() -> None:
    assert (Settings().wait_timeout, Settings().wait_poll_max) == (3600.0, 30.0)
    assert Settings.from_env({"NECTAR_WAIT_TIMEOUT": "60", "NECTAR_WAIT_POLL_MAX": "0.2"}).wait_poll_max == 0.2
    for var, value in (("NECTAR_WAIT_TIMEOUT", "-1"), ("NECTAR_WAIT_POLL_MAX", "0")):
        with pytest.raises(ValueError, match=f"{var} must be a number of seconds"):
            Settings.from_env({var: value})
    assert (wait_timeout(PatientTask(), 3600.0), wait_timeout(luigi.Task(), 3600.0)) == (90.0, 3600.0)
    with pytest.raises(InvalidMaxRuntime, match=r"VaguelyPatientTask.wait_timeout must be a number of seconds"):
        wait_timeout(VaguelyPatientTask(), 3600.0)


# --- the loop, with a clock the test moves ----------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The registry's own time (when a run began to wait) is the test's clock too."""
    return Clock(START).install(monkeypatch, waits_sql)


@pytest.fixture
def runs(settings: Settings) -> RunStore:
    return closed_at_end(Nectar(settings)).runs


class Files:
    """What the loop's ``exists`` sees: the URIs present, how often each was asked, and a store that fails."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.asked: dict[str, int] = {}
        self.failing: Exception | None = None

    def exists(self, uri: str) -> bool:
        self.asked[uri] = self.asked.get(uri, 0) + 1
        if self.failing is not None:
            raise self.failing
        return uri in self.present


@pytest.fixture
def files() -> Files:
    return Files()


def waiting(runs: RunStore, clock: Clock, *what: str, n: int = 0, timeout: float = 60.0, skip: bool = False) -> Run:
    """A run whose first attempt, now, found ``what`` missing: checked first in 1 s, waiting ``timeout`` s."""
    run = Run.new(f"chains/t/c_chain/ATask/{n:032x}/out.txt", "t", "c_chain", "ATask", {"n": str(n)}, f"A_{n}")
    runs.submit(run)
    claimed = runs.claim("w:1", run_id=run.id)
    assert claimed is not None
    on_timeout = "skip" if skip else "fail"
    until, first = clock.now + timeout, clock.now + 1
    assert runs.wait(run.id, 1, list(what), until, first, f"waiting for {what[0]}", on_timeout)
    return run


def state(runs: RunStore, run: Run) -> Run:
    now = runs.get(run.id)
    assert now is not None
    return now


def test_checks_back_off_from_1s_doubling_to_the_max_and_the_timeout_fails_the_run(
    runs: RunStore, clock: Clock, files: Files
) -> None:
    loop = WaitLoop(runs, poll_max=5.0, clock=clock.time, exists=files.exists)
    run = waiting(runs, clock, "/landing/x.ack", timeout=12.0)

    checks = []
    while state(runs, run).state == RunState.WAITING:
        clock.now = state(runs, run).not_before
        checks.append(clock.now - START)
        loop.tick()
        assert loop.tick() == {}, "a run was checked before it was due"
    assert checks == [1, 2, 4, 8, 12]  # 1 s, doubling, at most 5 s, never past the deadline
    ended = state(runs, run)
    assert (ended.state, ended.error) == (RunState.FAILED, "waited 12s for /landing/x.ack")
    assert files.asked == {"/landing/x.ack": 5}


def test_a_long_wait_is_told_in_hours_and_minutes_naming_the_first_missing(
    runs: RunStore, clock: Clock, files: Files
) -> None:
    loop = WaitLoop(runs, poll_max=30.0, clock=clock.time, exists=files.exists)
    run = waiting(runs, clock, "s3://b/x.ack", "s3://b/y.ack", "s3://b/z.ack", timeout=3600.0)
    files.present.add("s3://b/x.ack")

    clock.advance(3600)
    assert loop.tick() == {"failed": 1}
    assert state(runs, run).error == "waited 1h0m for s3://b/y.ack and 1 more"


def test_a_timed_out_run_that_skips_is_cancelled_saying_so(runs: RunStore, clock: Clock, files: Files) -> None:
    run = waiting(runs, clock, "/landing/x.ack", timeout=2.0, skip=True)

    clock.advance(2)
    assert WaitLoop(runs, clock=clock.time, exists=files.exists).tick() == {"skipped": 1}
    ended = state(runs, run)
    assert (ended.state, ended.error) == (RunState.CANCELLED, "skipped: waited 2s for /landing/x.ack")


def test_each_object_is_checked_once_a_pass_and_its_runs_woken_together(
    runs: RunStore, clock: Clock, files: Files
) -> None:
    loop = WaitLoop(runs, clock=clock.time, exists=files.exists)
    many = [waiting(runs, clock, "/landing/x.ack", "/landing/y.ack", n=n) for n in range(20)]

    clock.advance(1)
    assert loop.tick() == {"later": 20}
    assert files.asked == {"/landing/x.ack": 1, "/landing/y.ack": 1}
    files.present |= {"/landing/x.ack", "/landing/y.ack"}
    clock.advance(1)
    assert loop.tick() == {"woken": 20}
    assert {state(runs, run).state for run in many} == {RunState.PENDING}
    assert runs.claim("w:2") is not None, "a woken run is not claimable"


def test_a_store_that_cannot_answer_is_logged_once_and_its_runs_wait_on(
    runs: RunStore, clock: Clock, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    loop = WaitLoop(runs, poll_max=1.0, clock=clock.time, exists=files.exists)
    run = waiting(runs, clock, "s3://gone/x.ack", timeout=3.0)
    files.failing = ConnectionError("S3 is unreachable")

    with caplog.at_level(logging.WARNING, logger="nectar.waiting"):
        for _ in range(5):  # past the deadline too: a store that cannot say fails no run
            clock.advance(1)
            assert loop.tick() == {"later": 1}
    assert state(runs, run).state == RunState.WAITING
    told = [r.getMessage() for r in caplog.records if "s3://gone/x.ack" in r.getMessage()]
    assert told == [
        "cannot check s3://gone/x.ack (its waiting runs are checked again later): ConnectionError: S3 is unreachable"
    ]
    files.failing = None
    clock.advance(1)
    assert loop.tick() == {"failed": 1}


def test_a_needed_run_that_fails_fails_the_run_waiting_for_it(runs: RunStore, clock: Clock, files: Files) -> None:
    loop = WaitLoop(runs, clock=clock.time, exists=files.exists)
    importer = waiting(runs, clock, "/landing/x.csv", n=1)
    waiter = waiting(runs, clock, f"run:{importer.id}", n=2)
    done = waiting(runs, clock, f"run:{importer.id}", n=3)

    clock.advance(1)
    assert loop.tick() == {"later": 3}
    files.present.add("/landing/x.csv")
    clock.advance(1)
    assert loop.tick() == {"woken": 1, "later": 2}
    claimed = runs.claim("w:2", run_id=importer.id)
    assert claimed is not None and runs.fail(claimed.id, claimed.attempt, "ImportTask", "boom", retryable=False)
    runs.cancel(done.id)
    clock.advance(2)
    assert loop.tick() == {"failed": 1}
    assert state(runs, waiter).error == f"needed run {importer.id}, which ended FAILED: boom"


def test_a_needed_run_that_is_done_wakes_its_waiter(runs: RunStore, clock: Clock, files: Files) -> None:
    first = Run.new(f"chains/t/c_chain/ATask/{99:032x}/out.txt", "t", "c_chain", "ATask", {}, "A_99")
    runs.submit(first)
    claimed = runs.claim("w:1", run_id=first.id)
    assert claimed is not None and runs.complete(first.id, claimed.attempt)
    waiter = waiting(runs, clock, f"run:{first.id}")

    clock.advance(1)
    assert WaitLoop(runs, clock=clock.time, exists=files.exists).tick() == {"woken": 1}
    assert state(runs, waiter).state == RunState.PENDING


# --- S3: a real S3 endpoint (moto's server) -------------------------------------------------------

S3_CHAIN = """import luigi
from luigi.contrib.s3 import S3Target


class LandedObject(luigi.ExternalTask):
    uri = luigi.Parameter()

    def output(self):
        return S3Target(self.uri)


class LoadObjectTask(luigi.Task):
    uri = luigi.Parameter()

    def requires(self):
        return LandedObject(uri=self.uri)

    def run(self):
        print("loaded", self.uri)
"""


def test_a_run_waits_for_an_s3_object_and_goes_on_once_it_is_there(
    s3_settings: Settings, write_chain: WriteChain
) -> None:
    write_chain("landing/s3_chain", S3_CHAIN)
    nectar, bucket = closed_at_end(Nectar(s3_settings)), s3_settings.bucket
    uri = f"s3://{bucket}/landing/sales/2026-06-01.ack"
    run = nectar.submit("landing", "s3_chain", "LoadObjectTask", {"uri": uri.replace("s3://", "s3a://")}).run
    assert run is not None
    run_in_foreground(s3_settings, nectar.runs, run.id, process_name())
    assert (state(nectar.runs, run).state, state(nectar.runs, run).waiting_for) == (RunState.WAITING, (uri,))

    moved = Clock(time.time() + 2)  # past its first check
    loop = WaitLoop(nectar.runs, clock=moved.time)
    assert loop.tick() == {"later": 1}
    boto3.client("s3").put_object(Bucket=bucket, Key="landing/sales/2026-06-01.ack", Body=b"")
    moved.advance(60)
    assert loop.tick() == {"woken": 1}
    run_in_foreground(s3_settings, nectar.runs, run.id, process_name())
    assert state(nectar.runs, run).state == RunState.DONE


def test_an_s3_object_is_checked_by_its_bucket_and_key_a_missing_bucket_is_the_stores_error(
    s3_settings: Settings,
) -> None:
    bucket = s3_settings.bucket
    boto3.client("s3").put_object(Bucket=bucket, Key="landing/x.csv", Body=b"x")
    assert _exists(f"s3://{bucket}/landing/x.csv") and not _exists(f"s3://{bucket}/landing/y.csv")
    with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
        _exists(f"s3://no-such-bucket-{bucket}/landing/x.csv")


# --- seen: the API, the UI, the metrics ------------------------------------------------------------


def test_a_waiting_run_is_seen_in_the_api_the_ui_and_the_metrics(
    settings: Settings, runs: RunStore, clock: Clock
) -> None:
    run = waiting(runs, clock, "s3://landing/sales/x.ack", "/landing/y.ack")
    runs.record_steps([Step(run.id, "Ack_1", "AckTask", None, "PENDING", error="waiting for s3://landing/sales/x.ack")])
    client: FlaskClient = build_app(settings).test_client()

    listed = client.get("/api/runs", query_string={"job_status": "WAITING"}).get_json()["data"]
    assert [(r["run_id"], r["job_status"]) for r in listed] == [(run.id, "WAITING")]
    assert listed[0]["waiting_for"] == ["s3://landing/sales/x.ack", "/landing/y.ack"]
    status = client.get("/api/chainstatus", query_string={"chain": run.key}).get_json()["data"]
    assert (status["job_status"], status["waiting_for"]) == ("WAITING", ["s3://landing/sales/x.ack", "/landing/y.ack"])
    assert status["wait_until"] is not None
    spec = client.get("/api/openapi.json").get_json()
    assert "WAITING" in str(spec["components"]["schemas"]["Run"]["properties"]["job_status"])

    page = client.get("/ui/runs").get_data(as_text=True)
    assert 'data-state="WAITING"' in page and "s3://landing/sales/x.ack</span> and 1 more" in page
    page = client.get(f"/ui/runs/{run.id}").get_data(as_text=True)
    assert 'id="run-waiting"' in page and "/landing/y.ack" in page

    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'nectar_runs{state="WAITING"} 1.0' in metrics

    answer = client.post(f"/api/runs/{run.id}/cancel")
    assert answer.status_code == 200, answer.get_json()
    assert state(runs, run).state == RunState.CANCELLED


# --- the check: real processes -------------------------------------------------------------


@pytest.fixture
def landing(
    settings: Settings, luigid: str, write_chain: WriteChain, processes: Processes, tmp_path: Path
) -> Iterator[Settings]:
    """luigid, the landing chain, ``nectar clock`` checking waits every 0.2 s at most (quick, not a bound)."""
    write_chain("landing/landing_chain", LANDING_CHAIN)
    value = settings.replace(scheduler_url=luigid, wait_poll_max=0.2)
    processes.start("clock", [*NECTAR, "clock"], {**base_env(), **settings_env(value)})
    yield value


def count(runs: RunStore, state: RunState, task: str = "LoadTask") -> int:
    return runs.find(RunFilter(task=task, state=state), limit=0)[1]


def test_fifty_waiting_runs_hold_no_slot_and_proceed_when_their_file_lands(
    landing: Settings, start_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    nectar = closed_at_end(Nectar(landing))
    absent, out = tmp_path / "landing" / "sales.csv", tmp_path / "out"
    start_worker(landing, workers=1)
    for n in range(50):
        nectar.submit("landing", "landing_chain", "LoadTask", {"path": str(absent), "n": str(n), "out": str(out)})
    runs = nectar.runs
    waitfor(lambda: count(runs, RunState.WAITING) == 50, 300, "the 50 runs to wait for their file")
    one = runs.find(RunFilter(task="LoadTask"), limit=1)[0][0]
    assert one.waiting_for == (str(absent),) and one.error == f"waiting for {absent}"
    landed = [step for step in runs.steps(one.id) if step.task == "LandedFile"]
    assert [(s.state, s.error) for s in landed] == [("PENDING", f"waiting for {absent}")]
    assert nectar.scheduler is not None
    assert (nectar.scheduler.task(landed[0].task_id) or {}).get("status") == "PENDING"  # luigid's view: missing

    quick = nectar.submit("landing", "landing_chain", "QuickTask", {"out": str(out)}).run
    assert quick is not None
    waitfor(lambda: state(runs, quick).state == RunState.DONE, 120, "the ordinary run to be done")
    assert count(runs, RunState.WAITING) == 50, "a waiting run ended before its file landed"

    absent.parent.mkdir(parents=True)
    absent.write_text("day,amount\n")
    waitfor(lambda: count(runs, RunState.DONE) == 50, 300, "the 50 runs to be done once their file landed")
    assert sorted(path.name for path in out.glob("load-*.txt")) == sorted(f"load-{n}.txt" for n in range(50))
    assert [(s.task, s.state, s.error) for s in runs.steps(one.id)] == [
        ("LandedFile", "DONE", None),
        ("LoadTask", "DONE", None),
    ]
    logged = "".join(path.read_text() for path in tmp_path.glob("worker-*.log"))
    assert f"run {one.id} of landing/landing_chain/LoadTask: waiting for {absent}" in logged


def test_a_task_whose_wait_timeout_passes_fails_saying_how_long_it_waited(
    landing: Settings, start_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    nectar = closed_at_end(Nectar(landing))
    absent = tmp_path / "never" / "there.ack"
    start_worker(landing, workers=1)
    params = {"path": str(absent), "n": "0", "out": str(tmp_path / "out")}
    run = nectar.submit("landing", "landing_chain", "ImpatientLoadTask", params).run
    assert run is not None

    runs = nectar.runs
    waitfor(lambda: not state(runs, run).state.active, 120, "the impatient run to end")
    ended = state(runs, run)
    assert (ended.state, ended.failed_step) == (RunState.FAILED, "LandedFile")
    assert ended.error is not None and re.fullmatch(rf"waited \d+s for {re.escape(str(absent))}", ended.error)
