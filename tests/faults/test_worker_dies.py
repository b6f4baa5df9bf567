"""A worker dies: killed with its children, killed alone (its attempts and spare stop on their own), stopped by
SIGTERM while it runs a run."""

from __future__ import annotations

import re
import signal

import pytest

from nectar.registry import RunState
from tests.faults.conftest import Cluster, children, cmdline, descendants, waitfor
from tests.faults.stopped import gone, requeued


def test_a_killed_worker_and_its_children_are_noticed_and_their_runs_retried(cluster: Cluster) -> None:
    cluster.fault = "kill -9 a worker and its children mid-task"
    # a lease that outlasts the test: only seeing the attempts' processes gone can free their runs
    cluster.settings = cluster.settings.replace(retries=2, lease_timeout=3600)
    first = cluster.start_service(workers=2)
    running = cluster.start_runs(2, sleeps="20,0.3")
    queued = cluster.api.queue(n=2, sleeps="0.3")  # no slot left: waits for one
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


def test_a_worker_killed_alone_leaves_no_attempt_or_spare_and_its_running_runsrequeued(cluster: Cluster) -> None:
    cluster.fault = "kill -9 a worker alone: its attempts and its spare stop with it"
    worker = cluster.start_service(workers=2, drain_grace=3600)
    runs = cluster.start_runs(2, sleeps="3600,0.3")
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
    grace = 3600 if how == "a second SIGTERM" else 1
    worker = cluster.start_service(workers=1, drain_grace=grace)
    [data] = cluster.start_runs(1, sleeps="3600,0.3")
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
