"""Runs executed end to end by real ``nectar worker`` processes against a real luigid. The tests that submit runs of a
chain of their own and read only those runs and their outputs share the module's worker (:func:`shared`); a test that
stops, counts or reconfigures a worker, or writes its chain after the worker started on purpose, keeps its own."""

from __future__ import annotations

import inspect
import json
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from harness import Processes
from nectar.config import Settings, configure
from nectar.errors import NotFound
from nectar.keys import PARAMS_FILE, STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.logs.files import open_log
from nectar.registry import RunState
from nectar.service import Nectar
from nectar.status import JobStatus
from nectar.stores import TargetStore, get_store
from nectar.stores.s3 import S3Store
from nectar.task import live_log_paths
from tests.conftest import REPO, wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_worker import module_settings, module_worker, write_chain_file

StartWorker = Callable[..., subprocess.Popen[bytes]]
WriteChain = Callable[[str, str], Path]


def finished(nectar: Nectar, key: TargetKey, timeout: float = 60) -> JobStatus:
    """Poll the status of ``key`` until its run is over."""

    def over() -> JobStatus | None:
        status = nectar.status(key)
        return status if status.job_status in {"DONE", "FAILED"} else None

    result = wait_until(over, timeout=timeout)
    assert isinstance(result, JobStatus)
    return result


def luigid_task(luigid: str, task_id: str) -> tuple[str, dict[str, object]]:
    """(status, record) of a task as luigid knows it."""
    answer = requests.get(f"{luigid}/api/task_search", params={"data": json.dumps({"task_str": task_id})}, timeout=60)
    by_status = answer.json()["response"]
    found = [(status, tasks[task_id]) for status, tasks in by_status.items() if task_id in tasks]
    assert len(found) == 1, by_status
    return found[0]


@pytest.fixture(scope="module")
def shared(luigid: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One ``nectar worker`` of one slot, its registry and local store, for the module's local runs that only submit
    runs of their own and read them: the example chains and this module's chains written before it starts (as each
    test wrote its chain before it started a worker of its own), so the worker executes them at its start. A start
    and stop of a worker costs ~0.5 s of CPU (CONTRIBUTING "(round 70, suiteC)")."""
    folder = tmp_path_factory.mktemp("executor")
    shutil.copytree(REPO / "chains", folder / "chains", ignore=shutil.ignore_patterns("__pycache__"))
    settings = module_settings(folder, scheduler_url=luigid)
    write_chain_file(settings, "cap/loud_local_chain", LOUD_CHAIN)
    write_chain_file(settings, "etl/two_step_chain", TWO_STEP_CHAIN)
    with module_worker(settings):
        yield settings


@pytest.fixture(params=["local", "s3"])
def any_settings(request: pytest.FixtureRequest, shared: Settings, luigid: str) -> Settings:
    """local: the module's worker's (:func:`shared`, started already: asked here, not by ``getfixturevalue``, so that
    it is made before the test's check of the registry files it leaves open); s3: the test's bucket, its worker its
    own (:func:`worker_unless_shared`)."""
    if request.param == "local":
        return shared
    return request.getfixturevalue("s3_settings").replace(scheduler_url=luigid)


def worker_unless_shared(settings: Settings, start_worker: StartWorker, workers: int = 2) -> None:
    """A worker of the test's own on ``settings``, unless they are the module's (:func:`shared`), whose worker runs."""
    if settings.store_kind != "local":
        start_worker(settings, workers=workers)


def test_sales_chain_runs_end_to_end(any_settings: Settings, start_worker: StartWorker, luigid: str) -> None:
    nectar = closed_at_end(Nectar(any_settings))
    # one luigid serves both stores: distinct parameters keep luigi's task ids apart (a task id
    # reported DONE moments ago is not scheduled again, see luigi's stable_done_cooldown_secs)
    rows = 40 if any_settings.store_kind == "local" else 41
    submission = nectar.submit("etl", "sales_chain", "AggregateSalesTask", {"day": "2024-05-06", "rows": rows})
    assert submission.created and submission.run is not None
    worker_unless_shared(any_settings, start_worker)

    status = finished(nectar, submission.key)

    assert status.job_status == "DONE", status
    store, key = nectar.store, submission.key
    assert store.kind == any_settings.store_kind
    lines = store.read_text(key).splitlines()
    assert lines[0] == "region,quantity,revenue"
    assert {line.split(",")[0] for line in lines[1:]} <= {"north", "south", "east", "west"}
    assert store.exists(key.with_file("generated_at.txt"))

    params = json.loads(store.read_text(key.with_file(PARAMS_FILE)))
    assert params["chain"] == "etl/sales_chain"
    assert params["task_id"] == submission.run.task_id
    assert params["key"] == key.path
    assert params["params"] == {
        "day": "2024-05-06",
        "rows": str(rows),
        "min_quantity": "1",
        "group_by": "region",
        "metrics": '["quantity", "revenue"]',
    }
    assert [s.task for s in status.steps] == ["GenerateSalesTask", "CleanSalesTask", "AggregateSalesTask"]
    assert all(s.state == "DONE" and s.executed for s in status.steps)
    assert status.resource_url is None if store.kind == "local" else str(status.resource_url).startswith("http")

    upstream = {s.task: TargetKey.parse(s.key) for s in status.steps if s.key}
    assert "kept" in store.read_text(upstream["CleanSalesTask"].with_file(STDOUT_FILE))
    assert f"generated {rows} lines for 2024-05-06" in store.read_text(
        upstream["GenerateSalesTask"].with_file(STDERR_FILE)
    )
    for step in nectar.runs.steps(submission.run.id):  # with luigi's task id (a status's steps have none)
        assert luigid_task(luigid, step.task_id)[0] == "DONE"


LOUD_CHAIN = """
import logging
import subprocess
import sys

import luigi

from nectar import NectarTask


class LoudTask(NectarTask):
    fail = luigi.BoolParameter(default=False)

    def run(self):
        print("printed line")
        logging.getLogger("loud").warning("logged line")
        subprocess.run(
            [sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"], check=True
        )
        if self.fail:
            raise RuntimeError("LoudTask gave up")
        with self.output().open("w") as out:
            out.write("loud\\n")
"""


@pytest.mark.parametrize("fail", [False, True], ids=["done", "failed"])
def test_logs_hold_prints_logging_and_subprocess_output(
    any_settings: Settings, write_chain: WriteChain, start_worker: StartWorker, luigid: str, fail: bool
) -> None:
    chain = f"loud_{any_settings.store_kind}_chain"  # distinct luigi task ids per store
    if any_settings.store_kind != "local":  # the module's worker's chains hold it already
        write_chain(f"cap/{chain}", LOUD_CHAIN)
    nectar = closed_at_end(Nectar(any_settings))
    submission = nectar.submit("cap", chain, "LoudTask", {"fail": fail})
    worker_unless_shared(any_settings, start_worker, workers=1)

    status = finished(nectar, submission.key)

    store: TargetStore = nectar.store
    stdout = store.read_text(submission.key.with_file(STDOUT_FILE))
    stderr = store.read_text(submission.key.with_file(STDERR_FILE))
    assert "printed line" in stdout and "child out" in stdout
    assert "WARNING loud: logged line" in stderr and "child err" in stderr
    assert store.exists(submission.key.with_file(PARAMS_FILE))
    assert status.run is not None
    if fail:
        assert status.job_status == "FAILED"
        assert not store.exists(submission.key)
        assert status.failed_step == "LoudTask"
        assert status.error == "RuntimeError: LoudTask gave up"
        assert "Traceback (most recent call last)" in stderr and "RuntimeError: LoudTask gave up" in stderr
        assert luigid_task(luigid, status.run.task_id)[0] == "FAILED"
    else:
        assert status.job_status == "DONE"
        assert "Traceback" not in stderr
        assert store.read_text(submission.key) == "loud\n"
        assert luigid_task(luigid, status.run.task_id)[0] == "DONE"


FLAKY_CHAIN = """
from pathlib import Path

import luigi

from nectar import NectarTask

COUNTER = Path({counter!r})
BROKEN = {broken!r}


def count(step):
    with COUNTER.open("a") as handle:
        handle.write(step + "\\n")


class ExtractTask(NectarTask):
    def run(self):
        count("extract")
        with self.output().open("w") as out:
            out.write("raw\\n")


class TransformTask(NectarTask):
    def requires(self):
        return ExtractTask()

    def run(self):
        count("transform")
        if BROKEN:
            raise ValueError("transform is broken")
        with self.output().open("w") as out:
            out.write("clean\\n")


class LoadTask(NectarTask):
    def requires(self):
        return TransformTask()

    def run(self):
        count("load")
        with self.output().open("w") as out:
            out.write("loaded\\n")
"""


def test_a_failed_step_is_fixed_in_the_chain_file_and_the_rerun_resumes_there(
    settings: Settings, luigid: str, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    counter = tmp_path / "counter.txt"
    write_chain("etl/flaky_chain", FLAKY_CHAIN.format(counter=str(counter), broken=True))
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=1)

    first = nectar.submit("etl", "flaky_chain", "LoadTask", {})
    failed = finished(nectar, first.key)
    assert failed.job_status == "FAILED"
    assert failed.failed_step == "TransformTask"
    assert failed.error == "ValueError: transform is broken"
    assert counter.read_text().splitlines() == ["extract", "transform"]
    assert {s.task: s.state for s in failed.steps} == {
        "LoadTask": "PENDING",
        "TransformTask": "FAILED",
        "ExtractTask": "DONE",
    }

    write_chain("etl/flaky_chain", FLAKY_CHAIN.format(counter=str(counter), broken=False))
    second = nectar.submit("etl", "flaky_chain", "LoadTask", {})
    assert second.created and second.key == first.key and second.run != first.run
    done = finished(nectar, second.key)

    assert done.job_status == "DONE", done
    assert worker.poll() is None  # the same worker process, never restarted
    assert counter.read_text().splitlines() == ["extract", "transform", "transform", "load"]
    executed = {s.task: s.executed for s in done.steps}
    assert executed == {"LoadTask": True, "TransformTask": True, "ExtractTask": False}
    assert nectar.runs.count(RunState.FAILED) == 1 and nectar.runs.count(RunState.DONE) == 1


def test_a_chain_that_no_longer_imports_fails_its_run(
    settings: Settings, write_chain: WriteChain, start_worker: StartWorker
) -> None:
    write_chain("cap/fragile_chain", "from nectar import NectarTask\nclass FragileTask(NectarTask):\n    pass\n")
    nectar = closed_at_end(Nectar(settings))
    submission = nectar.submit("cap", "fragile_chain", "FragileTask", {})
    write_chain("cap/fragile_chain", "raise ImportError('gone')\n")
    start_worker(settings, workers=1)

    status = finished(nectar, submission.key)

    assert status.job_status == "FAILED"
    assert status.failed_step == "FragileTask"
    assert status.error == "cannot load cap/fragile_chain/FragileTask: ImportError: gone (fragile_chain.py, line 1)"


SLOW_CHAIN = (
    "import time\nfrom nectar import NectarTask\n"
    "class SlowTask(NectarTask):\n"
    "    def run(self):\n"
    "        open({started!r}, 'a').write('start\\n')\n"
    "        time.sleep({seconds})\n"
    "        self.output().open('w').close()\n"
)


# a task of 1 s drained for a minute; one of an hour (only the interrupt ends it) drained for half a second
@pytest.mark.parametrize(("seconds", "grace"), [(1.0, 60.0), (3600.0, 0.5)], ids=["finishes-in-grace", "requeued"])
def test_a_stopped_worker_drains_then_requeues_what_still_runs(
    settings: Settings, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path, seconds: float, grace: float
) -> None:
    started = tmp_path / "started.txt"
    write_chain("cap/slow_chain", SLOW_CHAIN.format(started=str(started), seconds=seconds))
    settings = settings.replace(drain_grace=grace)
    nectar = closed_at_end(Nectar(settings))  # luigi's local scheduler here; luigid is told about interrupted tasks
    submission = nectar.submit("cap", "slow_chain", "SlowTask", {})
    first = start_worker(settings, workers=1)
    wait_until(started.exists, timeout=60)

    first.terminate()
    assert first.wait(timeout=120) == 0
    after_stop = nectar.runs.latest(submission.key.path)
    assert after_stop is not None
    if seconds < grace:  # the drain let it finish
        assert after_stop.state == RunState.DONE
        assert started.read_text() == "start\n"
        return
    # interrupted and put back in the queue, the attempt not counted
    assert (after_stop.state, after_stop.attempt) == (RunState.PENDING, 0)
    assert not nectar.store.exists(submission.key)
    write_chain("cap/slow_chain", SLOW_CHAIN.format(started=str(started), seconds=0.1))
    start_worker(settings, workers=1)
    done = finished(nectar, submission.key)
    assert done.job_status == "DONE" and done.run is not None and done.run.id == after_stop.id
    assert done.run.attempt == 1
    assert started.read_text() == "start\nstart\n"


SHARED_CHAIN = (
    "import os, time\nimport luigi\nfrom nectar import NectarTask\n"
    "class SharedTask(NectarTask):\n"
    "    def complete(self):\n"
    "        done = super().complete()\n"
    "        if not done and os.path.exists({hold!r}):  # a check the test holds after it found the step undone\n"
    "            open({checked!r}, 'w').close()\n"
    "            while os.path.exists({hold!r}):\n"
    "                time.sleep(0.02)\n"
    "        return done\n"
    "    def run(self):\n"
    "        open({ledger!r}, 'a').write('shared\\n')\n"
    "        while not os.path.exists({gate!r}):  # held until both runs are under way\n"
    "            time.sleep(0.02)\n"
    "        self.output().open('w').close()\n"
    "class UserTask(NectarTask):\n"
    "    n = luigi.IntParameter()\n"
    "    def requires(self):\n"
    "        return SharedTask()\n"
    "    def run(self):\n"
    "        open({ledger!r}, 'a').write(f'user {{self.n}}\\n')\n"
    "        self.output().open('w').close()\n"
)


def shared_chain(ledger: Path, gate: Path, tmp_path: Path) -> str:
    """SHARED_CHAIN, its completeness checks held while ``<tmp_path>/hold`` exists (``<tmp_path>/checked`` says one
    is held)."""
    hold, checked = tmp_path / "hold", tmp_path / "checked"
    return SHARED_CHAIN.format(ledger=str(ledger), gate=str(gate), hold=str(hold), checked=str(checked))


def test_runs_sharing_a_step_run_it_once_the_other_waits_for_it_uncounted(
    settings: Settings, luigid: str, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    ledger, gate = tmp_path / "ledger.txt", tmp_path / "gate"
    write_chain("cap/shared_chain", shared_chain(ledger, gate, tmp_path))
    settings = settings.replace(scheduler_url=luigid)
    nectar = closed_at_end(Nectar(settings))
    first = nectar.submit("cap", "shared_chain", "UserTask", {"n": 1})
    second = nectar.submit("cap", "shared_chain", "UserTask", {"n": 2})
    start_worker(settings, workers=2)
    # the shared step is held: one run runs it (RUNNING), the other met it running and waits (put back, its
    # ``waiting_since`` set: states that last while the gate is shut; the waiting run is RUNNING only a few ms of
    # each pass, which a poll for both RUNNING at once missed for 60 s on CI)
    ids = [submission.run.id for submission in (first, second) if submission.run is not None]

    def one_runs_it_the_other_waits() -> bool:
        runs = [nectar.run(run_id) for run_id in ids]
        running = [run for run in runs if run.state == RunState.RUNNING and run.waiting_since is None]
        return ledger.exists() and bool(running) and any(run.waiting_since is not None for run in runs)

    wait_until(one_runs_it_the_other_waits)
    gate.touch()

    done = [finished(nectar, submission.key) for submission in (first, second)]

    assert [status.job_status for status in done] == ["DONE", "DONE"]
    assert sorted(ledger.read_text().splitlines()) == ["shared", "user 1", "user 2"]
    assert all(status.run is not None and status.run.attempt == 1 for status in done)  # waiting is not a failure


@pytest.fixture
def stock_luigid(tmp_path: Path) -> Iterator[str]:
    """luigi's own luigid (none of our patches: it never says whether a PENDING took a step back from DONE), with the
    project's luigi.cfg (``stable_done_cooldown_secs = 0``)."""
    processes = Processes(tmp_path / "logs")
    try:
        yield f"http://127.0.0.1:{processes.luigid(None, tmp_path / 'luigid', plain=True).port}"
    finally:
        processes.close()


@pytest.mark.parametrize("which", ["luigid", "stock_luigid"])
def test_a_step_found_undone_just_before_another_run_made_it_is_not_run_again(
    settings: Settings,
    request: pytest.FixtureRequest,
    which: str,
    write_chain: WriteChain,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """The second run checks the shared step (undone), the first run's worker then makes it and tells luigid DONE,
    and only then does the second tell luigid the step is PENDING (luigi.cfg: no stable_done_cooldown_secs, so
    luigid takes it back to PENDING and grants it): the step is not run a second time. Against ours, which says the
    PENDING took it back from DONE, and luigi's own, which says nothing of it: there the step's ``complete()`` is asked
    again before it runs (``Worker._made_by_another``), the one ask more than luigi's per granted step."""
    luigid: str = request.getfixturevalue(which)
    ledger, gate, hold, checked = (tmp_path / name for name in ("ledger.txt", "gate", "hold", "checked"))
    write_chain("cap/shared_chain", shared_chain(ledger, gate, tmp_path))
    settings = settings.replace(scheduler_url=luigid)
    nectar = closed_at_end(Nectar(settings))
    first = nectar.submit("cap", "shared_chain", "UserTask", {"n": 3})
    start_worker(settings, workers=2)
    wait_until(ledger.exists)  # the first run runs the shared step, held by the gate
    hold.touch()
    second = nectar.submit("cap", "shared_chain", "UserTask", {"n": 4})
    wait_until(checked.exists)  # the second run found the step undone; its check is held before luigid hears of it
    gate.touch()
    assert finished(nectar, first.key).job_status == "DONE"  # the step is DONE in luigid, its output written
    hold.unlink()

    status = finished(nectar, second.key)

    assert status.job_status == "DONE", status
    assert sorted(ledger.read_text().splitlines()) == ["shared", "user 3", "user 4"]
    assert status.run is not None and status.run.attempt == 1
    assert {step.task: step.state for step in status.steps} == {"SharedTask": "DONE", "UserTask": "DONE"}


CHECKED_CHAIN = (
    "import luigi\nfrom nectar import NectarTask\n"
    "class CheckedTask(NectarTask):\n"
    "    n = luigi.IntParameter()\n"
    "    def complete(self):\n"
    "        open({checks!r}, 'a').write('checked\\n')\n"
    "        return super().complete()\n"
    "    def run(self):\n"
    "        open({checks!r}, 'a').write('ran\\n')\n"
    "        self.output().open('w').close()\n"
)


def test_a_step_no_other_run_made_meanwhile_is_checked_once_before_it_runs(
    settings: Settings, luigid: str, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A step luigid grants that no late PENDING took back from DONE is run without checking it again (a check is a
    HEAD on S3)."""
    checks = tmp_path / "checks.txt"
    write_chain("cap/checked_chain", CHECKED_CHAIN.format(checks=str(checks)))
    settings = settings.replace(scheduler_url=luigid)
    nectar = closed_at_end(Nectar(settings))
    submission = nectar.submit("cap", "checked_chain", "CheckedTask", {"n": 1})
    checks.unlink()  # the submission's own check (a task already complete is not queued)
    start_worker(settings, workers=1)

    assert finished(nectar, submission.key).job_status == "DONE"
    lines = checks.read_text().splitlines()
    assert lines[: lines.index("ran")] == ["checked"]  # luigi's, as it scheduled the step


TWO_STEP_CHAIN = """
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class FirstTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("first\\n")


class GatedTask(NectarTask):
    gate = luigi.Parameter()  # a file the test creates to let the task end

    def requires(self):
        return FirstTask()

    def run(self):
        while not Path(self.gate).exists():
            time.sleep(0.02)
        with self.output().open("w") as out:
            out.write("gated\\n")
"""


def test_a_step_shows_running_at_once_and_the_one_before_it_done(shared: Settings, tmp_path: Path) -> None:
    """Steps' changes are written in batches, but a start is never held back, nor what came before it. The module's
    worker (:func:`shared`), started with the chain in its folder, as this test started one before."""
    nectar = closed_at_end(Nectar(shared))
    gate = tmp_path / "gate"
    submission = nectar.submit("etl", "two_step_chain", "GatedTask", {"gate": str(gate)})

    def gated_running() -> dict[str, str] | None:
        states = {s.task: s.state for s in nectar.status(submission.key).steps}
        return states if states.get("GatedTask") == "RUNNING" else None

    assert wait_until(gated_running, timeout=60, interval=0.02) == {"GatedTask": "RUNNING", "FirstTask": "DONE"}
    gate.touch()
    done = finished(nectar, submission.key)
    assert {s.task: (s.state, s.executed) for s in done.steps} == {
        "GatedTask": ("DONE", True),
        "FirstTask": ("DONE", True),
    }


CHATTY_CHAIN = """
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class ChattyTask(NectarTask):
    gate = luigi.Parameter()  # a file the test creates to let the task go on

    def run(self):
        print("first line", flush=True)
        while not Path(self.gate).exists():
            time.sleep(0.02)
        print("second line", flush=True)
        with self.output().open("w") as out:
            out.write("done\\n")
"""


def test_a_running_tasks_log_is_readable_from_another_machine_through_s3(
    s3_settings: Settings, luigid: str, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Live logs are files on the worker's machine; with S3 they are also copied there while the task runs."""
    settings = s3_settings.replace(scheduler_url=luigid, log_sync_interval=0.3)
    write_chain("etl/chatty_chain", CHATTY_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=1)
    gate = tmp_path / "gate"
    submission = nectar.submit("etl", "chatty_chain", "ChattyTask", {"gate": str(gate)})
    # first on the worker's machine, no S3 read: the task has printed its first line to its live log (the worker
    # started, claimed the run, set its attempt up); each step of the way a wait of its own
    live = live_log_paths(submission.key)[0]
    wait_until(lambda: live.exists() and live.read_text() == "first line\n", interval=0.02)
    elsewhere = settings.replace(data_dir=tmp_path / "another-machine")  # no live log files there
    configure(elsewhere)
    store = get_store(elsewhere)

    def seen_elsewhere() -> str | None:
        try:
            return b"".join(open_log(submission.key, "stdout", store)).decode()
        except NotFound:
            return None

    # then its copy, as another machine reads it: what one S3 request may block (a copy's, or this read's) is the
    # store's own give-up, a read timeout each attempt, which a wait on S3 outlasts
    early = wait_until(seen_elsewhere, timeout=outlasting(store), interval=0.1)
    assert early == "first line\n"
    assert nectar.status(submission.key).job_status == "RUNNING"
    gate.touch()
    assert finished(nectar, submission.key, timeout=outlasting(store)).job_status == "DONE"  # its last copy waited
    assert seen_elsewhere() == "first line\nsecond line\n"


def outlasting(store: TargetStore) -> float:
    """A wait's deadline on what S3 serves: ``wait_until``'s default past what one request of ``store`` may block
    before its client gives up (its read timeout, each of its attempts, the first and its retries): a request that
    stalls (no answer from moto on a loaded machine) is tried again, where the test's one deadline of 60 s ended as
    the first timed out."""
    assert isinstance(store, S3Store)
    config = store.boto.meta.config
    return (
        inspect.signature(wait_until).parameters["timeout"].default
        + config.read_timeout * config.retries["total_max_attempts"]
    )


def test_an_idle_worker_with_a_long_poll_stops_at_once_on_sigterm(
    settings: Settings, start_worker: StartWorker, luigid: str, tmp_path: Path
) -> None:
    """NECTAR_WORKER_POLL is the longest an idle worker sleeps (a second or more on PostgreSQL, the README says): a
    SIGTERM wakes it. (Python retries ``poll()`` after a signal's handler: the worker slept the rest out, an hour.)"""
    worker = start_worker(settings.replace(worker_poll_interval=3600.0), workers=1)
    log = next(tmp_path.glob("worker-*.log"))
    wait_until(lambda: "slot(s), registry" in log.read_text(), timeout=60)  # its signal handlers are set
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, log.read_text()  # 60 s: only a hung worker fails
