"""A worker dies: killed with its children, killed alone (its attempts and spare stop on their own), stopped by
SIGTERM while it runs a run."""

from __future__ import annotations

import re
import signal
from functools import partial

import pytest

from nectar.registry import RunState
from tests.faults.conftest import Cluster, children, cmdline, descendants, waitfor
from tests.faults.stopped import gone, requeued
from tests.helpers.suiteE_links import LinksOnce


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
    lost = re.compile(r"worker lost: \S+ \(its process is gone\) during attempt 1")
    seen: list[dict] = []
    links = LinksOnce()  # each state's links fetched once, not at every poll

    def done(data: dict) -> dict | None:
        """The run's status once it is DONE; before, each status that no longer shows attempt 1 RUNNING is kept. Under
        load the new worker may notice, requeue, claim and finish attempt 2 between two polls: none may be seen."""
        status = cluster.api.state(data["key"], links)
        if status["job_status"] != "RUNNING" or status["attempt"] >= 2:
            seen.append(status)
        return status if status["job_status"] == "DONE" else None

    for data in running:
        status = waitfor(partial(done, data), 60, f"{data['key']} to be done")
        assert (status["job_status"], status["attempt"], status["max_attempts"]) == ("DONE", 2, 3), status
        # the loss is kept with the attempt it ended, not on the run or the step that then succeeded
        assert status["error"] is None and all(step["error"] is None for step in status["steps"]), status
        answer = cluster.api.run(data["run_id"])
        assert answer.status_code == 200 and status["run_url"].endswith(f"/api/runs/{data['run_id']}"), answer.text
        first_attempt, second = answer.json()["data"]["attempts"]
        assert (first_attempt["attempt"], first_attempt["state"]) == (1, "FAILED"), first_attempt
        assert lost.fullmatch(first_attempt["error"] or ""), first_attempt
        assert (second["attempt"], second["state"], second["error"]) == (2, "DONE", None), second
    # a status seen while attempt 2 was coming (requeued, or running) says what ended attempt 1, or why the run
    # waits now (luigid not granting its task yet: nectar.outcomes.wait)
    for status in seen:
        error = status["error"] or ""
        assert status["job_status"] == "DONE" or lost.fullmatch(error) or error.startswith("waiting: "), status
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
