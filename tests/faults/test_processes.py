"""Processes die: the API, a worker with its children, luigid, a worker stopped; an attempt frozen.
(``nectar serve``'s processes stopped the hard way: test_serve_stops.py.)"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator

import pytest

from nectar.attempt import process_name
from nectar.ports import parent_of
from nectar.registry import RunState
from tests.faults.conftest import Cluster, alive, children, cmdline, descendants, waitfor
from tests.faults.stopped import gone, requeued


def test_runs_accepted_before_the_api_is_killed_are_all_done_by_a_new_api(cluster: Cluster) -> None:
    cluster.fault = "kill -9 the API (gunicorn group) after 202s"
    cluster.start_luigid()
    cluster.start_worker(workers=2)
    cluster.start_api()
    keys = [cluster.api.queue(n=n, sleeps="0.8")["key"] for n in range(6)]
    waitfor(lambda: cluster.ledger.count("start") >= 1, 60, "a run to start")

    killed = cluster.kill_api()

    assert not any(alive(pid) for pid in killed)
    cluster.start_api()
    for data in cluster.api.wait_all(keys, timeout=60):
        assert data["attempt"] == 1 and data["error"] is None
    assert cluster.ledger.count("end", "LedgerTask") == 6
    cluster.account()


def test_a_killed_worker_and_its_children_are_noticed_and_their_runs_retried(cluster: Cluster) -> None:
    cluster.fault = "kill -9 a worker and its children mid-task"
    # a lease that outlasts the test: only seeing the attempts' processes gone can free their runs
    cluster.settings = cluster.settings.replace(retries=2, lease_timeout=3600)
    cluster.start_luigid()
    cluster.start_api()
    first = cluster.start_worker(workers=2)
    running = [cluster.api.queue(n=n, sleeps="20,0.3") for n in range(2)]
    queued = cluster.api.queue(n=2, sleeps="0.3")
    waitfor(lambda: cluster.ledger.count("start") == 2, 60, "two runs to start")
    executing = {e.pid for e in cluster.ledger.executions()}
    assert executing <= set(children(first.pid)), "the attempts run in the worker's children"

    killed = cluster.kill_worker(first)

    assert executing <= set(killed)
    cluster.start_worker(workers=2)
    noticed: dict[str, dict] = {}

    def noticed_all() -> bool:
        """Every killed attempt has stopped showing RUNNING (it is waiting for, or running, attempt 2)."""
        for data in running:
            if data["key"] not in noticed:
                status = cluster.api.state(data["key"])
                if status["job_status"] != "RUNNING" or status["attempt"] >= 2:
                    noticed[data["key"]] = status
        return len(noticed) == len(running)

    waitfor(noticed_all, 60, "the killed attempts to stop showing RUNNING")
    for status in noticed.values():
        assert status["error"].startswith("worker lost: "), status
        assert "(its process is gone) during attempt 1" in status["error"], status
    for data in cluster.api.wait_all([d["key"] for d in running], timeout=60):
        assert (data["job_status"], data["attempt"], data["max_attempts"]) == ("DONE", 2, 3), data
    assert cluster.api.wait(queued["key"])["attempt"] == 1
    for data in running:
        run = cluster.run(data["run_id"])
        assert run.attempt == 2 and run.error is None
    assert cluster.ledger.count("start", "LedgerTask") == 5 and cluster.ledger.count("end", "LedgerTask") == 3
    cluster.account()


def test_runs_survive_luigid_killed_and_restarted_mid_run(cluster: Cluster) -> None:
    cluster.fault = "kill -9 luigid mid-run, restart on the same port and state"
    cluster.settings = cluster.settings.replace(retries=2, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    cluster.start_worker(workers=2)
    keys = [cluster.api.queue(n=n, sleeps="2")["key"] for n in range(4)]
    waitfor(lambda: cluster.ledger.count("start") >= 2, 60, "two runs to start")

    cluster.kill_luigid()
    assert cluster.api.healthz().json()["message"].startswith("degraded: scheduler unavailable")
    # stay down until a task has finished: its luigi worker reports DONE to a dead scheduler
    waitfor(lambda: cluster.ledger.count("end") >= 1, 60, "a task to finish while luigid is down")
    cluster.start_luigid()

    cluster.api.wait_all(keys, timeout=90)
    assert cluster.ledger.count("end", "LedgerTask") == 4
    cluster.account()


def test_a_worker_killed_alone_leaves_no_attempt_or_spare_and_its_running_runsrequeued(cluster: Cluster) -> None:
    cluster.fault = "kill -9 a worker alone: its attempts and its spare stop with it"
    cluster.start_luigid()
    cluster.start_api()
    worker = cluster.start_worker(workers=2, drain_grace=3600)
    runs = [cluster.api.queue(n=n, sleeps="3600,0.3") for n in range(2)]
    waitfor(lambda: cluster.ledger.count("start") == 2, 60, "two runs to start")
    waitfor(lambda: len(children(worker.pid)) >= 3, 60, "a spare beside the two attempts")
    started = {pid: cmdline(pid) for pid in descendants(worker.pid)}
    assert {e.pid for e in cluster.ledger.executions()} < set(started), started

    cluster.ledger.note("kill", worker.pid)
    worker.kill()
    worker.wait(timeout=60)

    gone(started, "the killed worker's attempts and spare to stop on their own")
    requeued(cluster, runs)

    cluster.start_worker(workers=2)

    for data in cluster.api.wait_all([r["key"] for r in runs], timeout=60):
        assert data["attempt"] == 1, data
    cluster.account()


@pytest.mark.parametrize("how", ["a second SIGTERM", "the drain running out"])
def test_a_stopping_worker_says_what_it_waits_for_and_requeues_what_it_interrupts(cluster: Cluster, how: str) -> None:
    """One line per event, none of them a traceback: what the drain waits for and how long, then the interrupt."""
    cluster.fault = f"SIGTERM a worker running a run; interrupted by {how}"
    cluster.start_luigid()
    cluster.start_api()
    grace = 3600 if how == "a second SIGTERM" else 1
    worker = cluster.start_worker(workers=1, drain_grace=grace)
    data = cluster.api.queue(n=0, sleeps="3600,0.3")
    waitfor(lambda: cluster.ledger.count("start") == 1, 60, "the run to start")
    log = cluster.log_of[worker.pid]
    waiting = f"stopping: waiting up to {grace} s for 1 running run ({data['run_id']}) to finish"

    worker.send_signal(signal.SIGTERM)

    waitfor(lambda: waiting in log.read_text(), 60, f"the worker to say {waiting!r}")
    if how == "a second SIGTERM":
        assert cluster.run(data["run_id"]).state == RunState.RUNNING  # the drain lets it run
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    said = log.read_text()
    interrupting = (
        "stopping (asked again): interrupting" if how == "a second SIGTERM" else "the drain is over after 1 s"
    )
    assert f"{interrupting}" in said and f"1 running run ({data['run_id']}) now" in said, said
    assert "Traceback" not in said and not re.search(r"Worker \S+ failed", said), said
    assert "logging configured" not in said, "luigi's own INFO lines pass luigi.cfg's WARNING"
    assert re.search(r"LedgerTask\(n=0, sleeps=3600,0\.3, [^)]*\) interrupted: the worker is stopping", said), said
    requeued(cluster, [data])

    cluster.start_worker(workers=1)

    assert cluster.api.wait(data["key"], timeout=60)["attempt"] == 1
    cluster.account()


def test_a_frozen_attempt_is_reclaimed_and_exits_without_finishing_when_thawed(cluster: Cluster) -> None:
    cluster.fault = "SIGSTOP the child executing a task; SIGCONT after the run was reclaimed and DONE"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    workers = [cluster.start_worker(workers=1), cluster.start_worker(workers=1)]
    data = cluster.api.queue(n=0, sleeps="30,2")
    waitfor(lambda: cluster.ledger.count("start") == 1, 60, "the run to start")
    frozen = cluster.ledger.executions()[0].pid
    owner = parent_of(frozen)
    assert owner in {w.pid for w in workers}
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 60, "the child's first heartbeat")

    cluster.freeze(frozen)

    # reclaimed for its silence (the frozen process is alive): the second attempt carries the reason while it runs
    second_attempt = waitfor(lambda: (r := cluster.run(data["run_id"])).attempt == 2 and r, 60, "attempt 2 to start")
    assert f"worker lost: {process_name(frozen)} (no heartbeat for " in second_attempt.error, second_attempt
    done = cluster.api.wait(data["key"], timeout=60)
    assert (done["attempt"], done["max_attempts"]) == (2, 2)
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]
    assert second.end is not None
    assert cluster.run(data["run_id"]).worker == process_name(second.pid)
    assert alive(frozen), "still frozen: its own worker must not have been able to finish it"

    os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 60, "the thawed child to exit")
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    assert first.end is None, "the thawed child went on and finished a task it had lost"
    assert cluster.ledger.count("end") == 1
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    assert cluster.run(data["run_id"]).state == RunState.DONE
    cluster.account()


def test_a_frozen_attempt_thawed_when_its_work_is_due_does_not_finish_it(cluster: Cluster) -> None:
    """The frozen child's task has no work left when it is thawed (the gate it waits for was opened while it was
    stopped), and the registry is busy for a moment (another writer holds its lock): the child must still not
    finish a task whose attempt was reclaimed and done by another worker."""
    cluster.fault = "SIGSTOP a child near the end of its task; SIGCONT after reclaim, registry busy for 1 s"
    cluster.settings = cluster.settings.replace(retries=1, lease_timeout=3)
    cluster.start_luigid()
    cluster.start_api()
    cluster.start_worker(workers=1)
    cluster.start_worker(workers=1)
    gate = cluster.tmp / "gate"  # held until the child is frozen: a slow test cannot see it finish first
    data = cluster.api.queue(n=0, gate=str(gate))
    waitfor(lambda: cluster.ledger.count("start") == 1, 60, "the run to start")
    frozen = cluster.ledger.executions()[0].pid
    waitfor(lambda: cluster.run(data["run_id"]).worker == process_name(frozen), 60, "the child's first heartbeat")
    cluster.freeze(frozen)
    gate.touch()
    done = cluster.api.wait(data["key"], timeout=cluster.settings.lease_timeout + 60)
    assert done["attempt"] == 2
    [second] = [e for e in cluster.ledger.executions() if e.pid != frozen]

    with registry_busy(cluster, seconds=1.0):
        os.kill(frozen, signal.SIGCONT)

    waitfor(lambda: not alive(frozen), 60, "the thawed child to exit")
    [first] = [e for e in cluster.ledger.executions() if e.pid == frozen]
    ledger = cluster.ledger.path.read_text()
    assert first.end is None, f"the thawed child finished the task after its attempt was reclaimed:\n{ledger}"
    assert cluster.read(data["key"]) == f"{second.task_id} {second.pid}\n"
    cluster.account()


@contextlib.contextmanager
def registry_busy(cluster: Cluster, seconds: float) -> Iterator[None]:
    """Hold the registry's write lock (as a long transaction of another process would) around the block and
    for ``seconds`` after it."""
    db = sqlite3.connect(cluster.settings.registry_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        time.sleep(seconds)
        db.execute("COMMIT")
    finally:
        db.close()
