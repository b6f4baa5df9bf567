"""Leases through real workers, luigid and the API: a status read writes nothing; workers reclaim, and time out."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import luigi
import pytest
from flask.testing import FlaskClient

from harness import freeze
from nectar import reuse, standby
from nectar.attempt import InvalidMaxRuntime, max_runtime
from nectar.config import Settings
from nectar.errors import Interrupted
from nectar.leases import AttemptLease, holder
from nectar.luigid import SchedulerClient
from nectar.registry import Run, RunState, RunStore
from tests.api.conftest import build_app
from tests.conftest import wait_until
from tests.faults.conftest import alive, descendants
from tests.helpers.luigid import luigid_tasks

#: a task that waits for a flag file, with a child process of its own (its pid in ``<flag>.pid``) the whole time
WAITING_CHAIN = """
import os
import subprocess
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class WaitTask(NectarTask):
    flag = luigi.Parameter()

    def run(self):
        child = subprocess.Popen(["sleep", "600"])
        # the child's pid file, whole (written aside, then renamed): a test reads it as soon as it exists
        Path(self.flag + ".part").write_text(str(child.pid))
        os.replace(self.flag + ".part", self.flag + ".pid")
        while not Path(self.flag).exists():
            time.sleep(0.05)
        child.kill()
        with self.output().open("w") as out:
            out.write("done\\n")


class LimitedWaitTask(WaitTask):
    max_runtime = 1
"""


def registry_rows(settings: Settings) -> tuple[int, list[Any]]:
    """SQLite's data_version (another connection's commit changes it) and every row of the registry's tables."""
    with sqlite3.connect(settings.registry_path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = [(table, sorted(map(repr, db.execute(f"SELECT * FROM {table}")))) for table in tables]
        return db.execute("PRAGMA data_version").fetchone()[0], rows


def kill_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its children as one crash would: frozen first, so no child sees it die and requeues."""
    freeze(worker.pid)
    kids = descendants(worker.pid)
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.kill()
    worker.wait(timeout=60)
    wait_until(lambda: not any(alive(pid) for pid in kids), 60)


def pid_in(path: Path) -> str | None:
    """The pid written in ``path``, once it is there whole (None before)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text if text.isdigit() else None


def current(client: FlaskClient, run_id: str) -> Run:
    run = client.application.extensions["nectar"].runs.get(run_id)
    assert run is not None
    return run


def test_a_status_poll_of_a_run_whose_worker_was_killed_writes_nothing_and_a_worker_reclaims_it(
    settings: Settings,
    luigid: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    settings = settings.replace(scheduler_url=luigid, retries=1, lease_timeout=2.0)  # the API's: its reads say lost
    # the workers' lease, which no late heartbeat outlasts (with 2 s, one late on a loaded machine ended attempt 2 and
    # FAILED the run): the restarted worker reclaims the killed attempt as its process is gone
    on_workers = settings.replace(lease_timeout=3600.0)
    write_chain("blocking/waiting_chain", WAITING_CHAIN)
    client = build_app(settings).test_client()
    flag = tmp_path / "go"
    data = client.post("/api/chains/blocking/waiting_chain/WaitTask", json={"flag": str(flag)}).get_json()["data"]
    worker = start_worker(on_workers, workers=1)
    wait_until(lambda: Path(f"{flag}.pid").exists(), 60)  # the task runs
    kill_worker(worker)
    lost = current(client, data["run_id"])
    # a poll once the lease has run out: before this change, that poll reclaimed the run (a write) itself
    wait_until(lambda: time.time() - (lost.heartbeat_at or 0) > settings.lease_timeout + 0.5, 60)
    scheduler = SchedulerClient(luigid, 5.0)
    before, luigid_before = registry_rows(settings), luigid_tasks(scheduler)

    status = client.get(data["status_url"]).get_json()["data"]
    page = client.get(f"/ui/runs/{data['run_id']}")

    assert page.status_code == 200
    assert (status["job_status"], status["attempt"]) == ("RUNNING", 1), status
    assert status["error"].startswith(f"worker lost: {lost.worker} (") and "a worker will reclaim it" in status["error"]
    assert registry_rows(settings) == before, "a status read wrote to the registry"
    assert luigid_tasks(scheduler) == luigid_before, "a status read changed luigid's tasks"
    assert luigid_before[lost.task_id][0] == "RUNNING"  # nobody has told luigid yet

    start_worker(on_workers, workers=1)  # a restarted worker reclaims the lost attempt and runs attempt 2
    wait_until(lambda: current(client, data["run_id"]).attempt == 2, 60)
    flag.touch()
    done = wait_until(lambda: current(client, data["run_id"]).state == RunState.DONE, 60)
    assert done
    final = client.get(data["status_url"]).get_json()["data"]
    assert (final["job_status"], final["attempt"]) == ("DONE", 2), final


@pytest.mark.parametrize(
    ("task", "changes"),
    [("WaitTask", {"max_runtime": 1.0}), ("LimitedWaitTask", {"max_runtime": 0.0})],
    ids=["NECTAR_MAX_RUNTIME", "max_runtime attribute"],
)
def test_a_run_past_its_maximum_runtime_is_failed_timed_out_not_retried_and_leaves_no_process(
    settings: Settings,
    luigid: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    task: str,
    changes: dict[str, Any],
) -> None:
    settings = settings.replace(scheduler_url=luigid, retries=2, **changes)
    write_chain("blocking/waiting_chain", WAITING_CHAIN)
    client = build_app(settings).test_client()
    flag = tmp_path / "never"  # never set: the task would wait forever
    data = client.post(f"/api/chains/blocking/waiting_chain/{task}", json={"flag": str(flag)}).get_json()["data"]
    worker = start_worker(settings, workers=1)
    # written by the task once its child started (the file is there, empty, a moment before its pid is)
    task_child = int(str(wait_until(lambda: pid_in(Path(f"{flag}.pid")), 60)))
    attempt_process = holder(current(client, data["run_id"]).worker or "")[1]
    assert attempt_process is not None

    wait_until(lambda: current(client, data["run_id"]).state != RunState.RUNNING, 60)

    run = current(client, data["run_id"])
    assert (run.state, run.attempt, run.max_attempts) == (RunState.FAILED, 1, 3), run  # not retried
    assert run.error is not None and run.error.startswith("timed out"), run.error
    status = client.get(data["status_url"]).get_json()["data"]
    assert status["job_status"] == "FAILED" and "timed out" in status["error"], status
    scheduler = SchedulerClient(luigid, 5.0)
    wait_until(lambda: (scheduler.task(run.task_id) or {}).get("status") == "FAILED", 30)  # luigid's view too
    wait_until(lambda: not alive(attempt_process) and not alive(task_child), 30)
    assert worker.poll() is None  # the worker itself goes on


class OwnLimitTask(luigi.Task):
    max_runtime = 5


class ParameterNamedMaxRuntimeTask(luigi.Task):
    max_runtime = luigi.IntParameter(default=3)  # a parameter so named is no limit


class WrongLimitTask(luigi.Task):
    max_runtime = "soon"


def test_a_tasks_own_max_runtime_wins_and_one_that_is_no_number_of_seconds_is_the_chains_error() -> None:
    assert max_runtime(OwnLimitTask(), 100.0) == 5.0
    assert max_runtime(ParameterNamedMaxRuntimeTask(), 100.0) == 100.0
    refused = "WrongLimitTask.max_runtime must be a number of seconds ≥ 0, not 'soon'"
    with pytest.raises(InvalidMaxRuntime, match=refused):
        max_runtime(WrongLimitTask(), 100.0)


def said_by_a_child_sent_sigterm(then: Callable[[int], None]) -> tuple[bytes, int]:
    """What a child forked for it wrote on its pipe (``then``, given the pipe's end, in the child), which then sends
    itself SIGTERM (it writes " after SIGTERM" if it lives on), and its wait status: the signals are the process's."""
    said, told = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(said)
            then(told)
            os.kill(os.getpid(), signal.SIGTERM)
            os.write(told, b" after SIGTERM")
            code = 0
        finally:
            os._exit(code)
    os.close(told)
    with os.fdopen(said, "rb") as pipe:
        heard = pipe.read()
    return heard, os.waitpid(pid, 0)[1]


def test_a_process_between_attempts_ignores_a_late_interrupt_and_dies_of_sigterm(
    claimed: tuple[RunStore, Run],
) -> None:
    """The lease's signal handlers stay set from one attempt to the next (a reused process's runs), the run's things
    put back between them: with no attempt running, SIGUSR2 (the heartbeat's interrupt, late) is ignored, and SIGTERM
    ends the process as its default action does. In a child forked for it (the signals are the process's)."""
    runs, run = claimed

    def between_attempts(told: int) -> None:  # an attempt's lease taken and ended, the run's things put back
        before = reuse.before_run()
        with AttemptLease(runs, run, interval=3600):
            pass
        reuse.put_back(before)
        os.kill(os.getpid(), signal.SIGUSR2)
        os.write(told, b"alive")  # its handler (or its default action) has acted by now

    heard, status = said_by_a_child_sent_sigterm(between_attempts)
    assert heard == b"alive"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status


def test_a_late_interrupt_of_an_ended_lease_does_not_interrupt_the_next_healthy_attempt(
    claimed: tuple[RunStore, Run],
) -> None:
    """The heartbeat of an ended lease whose renewal failed as its run ended (the run no longer RUNNING) sends its
    interrupt once the process's next attempt has begun: that attempt, whose lease is not lost, goes on. In a child
    forked for it (the signals are the process's)."""
    runs, run = claimed

    def interrupted_late(told: int) -> None:  # the ended lease's interrupt, late, as the next attempt runs
        before, heard = reuse.before_run(), b"interrupted"
        with contextlib.suppress(Interrupted), AttemptLease(runs, run, interval=3600) as lease:
            os.kill(os.getpid(), signal.SIGUSR2)
            heard = b"lost" if lease.lost else b"went on"
        os.write(told, heard)
        reuse.put_back(before)

    heard, status = said_by_a_child_sent_sigterm(interrupted_late)
    assert heard == b"went on"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status


def test_a_process_whose_lease_failed_to_start_its_heartbeat_dies_of_sigterm_after(
    claimed: tuple[RunStore, Run],
) -> None:
    """An attempt's lease whose heartbeat thread cannot start (a process out of threads: caused here by a start that
    raises, the fault root's limits do not let a test cause) raises from its ``with``, which is left at once: no
    attempt runs then, and the process's signal handlers act on none. SIGTERM then ends the process as its default
    action does; it raised the lease's interrupt (``Interrupted``) where the process was, the lease it had failed to
    start kept as the attempt running. In a child forked for it (the signals are the process's)."""
    runs, run = claimed

    def failed_to_start(told: int) -> None:  # a lease that fails to start, the run's things put back
        def no_thread(*_: object) -> None:
            raise RuntimeError("can't start new thread")

        standby.start = no_thread  # type: ignore[assignment] # the child's own module: it exits after
        before = reuse.before_run()
        try:
            with AttemptLease(runs, run, interval=3600):
                os.write(told, b" ran")
        except RuntimeError:
            os.write(told, b"failed")
        reuse.put_back(before)

    heard, status = said_by_a_child_sent_sigterm(failed_to_start)
    assert heard == b"failed"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
