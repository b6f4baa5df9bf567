"""Submissions under pressure: concurrent duplicates, a full queue, and cancelling queued and running runs."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import requests

from tests.faults.conftest import Cluster, alive, waitfor
from tests.helpers.threads import released_together

CONCURRENT = 50


def at_once(cluster: Cluster, params: list[dict[str, Any]]) -> list[requests.Response]:
    """POST every parameter set from its own thread, all released together."""
    return released_together([functools.partial(cluster.api.submit, **values) for values in params])


def test_concurrent_identical_submissions_make_one_run_and_one_execution(cluster: Cluster) -> None:
    cluster.fault = f"{CONCURRENT} concurrent identical POSTs"
    cluster.start_service(workers=2)

    answers = at_once(cluster, [{"n": 0, "sleeps": "3"}] * CONCURRENT)

    assert Counter(a.status_code for a in answers) == {202: CONCURRENT}, [a.text for a in answers]
    bodies = [a.json()["data"] for a in answers]
    assert len({b["run_id"] for b in bodies}) == 1
    assert sum(b["created"] for b in bodies) == 1
    cluster.api.wait(bodies[0]["key"])
    assert (cluster.ledger.count("start"), cluster.ledger.count("end")) == (1, 1)
    assert cluster.registry.count() == 1
    cluster.account()


def test_concurrent_distinct_submissions_each_run_once(cluster: Cluster) -> None:
    cluster.fault = f"{CONCURRENT} concurrent POSTs of distinct parameters"
    cluster.start_service(workers=4)

    answers = at_once(cluster, [{"n": n} for n in range(CONCURRENT)])

    assert Counter(a.status_code for a in answers) == {202: CONCURRENT}, [a.text for a in answers]
    bodies = [a.json()["data"] for a in answers]
    assert len({b["run_id"] for b in bodies}) == len({b["key"] for b in bodies}) == CONCURRENT
    cluster.api.wait_all([b["key"] for b in bodies], timeout=60)
    ended = Counter(e.task_id for e in cluster.ledger.executions() if e.end is not None)
    assert len(ended) == CONCURRENT and set(ended.values()) == {1}
    assert cluster.ledger.count("start") == CONCURRENT
    cluster.account()


def test_a_full_queue_answers_503_with_retry_after_and_drains_once_a_worker_runs(cluster: Cluster) -> None:
    cluster.fault = "bounded queue (NECTAR_MAX_QUEUE=5), no worker at first"
    cluster.settings = cluster.settings.replace(max_queue=5)
    cluster.start_luigid()
    cluster.start_api()
    queued = [cluster.api.queue(n=n) for n in range(5)]

    full = cluster.api.submit(n=5)

    assert full.status_code == 503, full.text
    assert full.json()["message"].startswith("queue unavailable"), full.json()
    assert int(full.headers["Retry-After"]) == cluster.settings.retry_after
    again = cluster.api.submit(n=2)
    assert again.status_code == 202, again.text
    assert again.json()["data"]["run_id"] == queued[2]["run_id"] and again.json()["data"]["created"] is False

    cluster.start_worker(workers=2)

    cluster.api.wait_all([q["key"] for q in queued], timeout=60)
    assert cluster.registry.count() == 5
    assert cluster.ledger.count("end") == 5
    cluster.account()


def test_a_cancelled_queued_run_never_executes(cluster: Cluster) -> None:
    cluster.fault = "cancel a queued run"
    cluster.start_luigid()
    cluster.start_api()
    doomed = cluster.api.queue(n=0)

    cancelled = cluster.api.cancel(doomed["run_id"])

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["job_status"] == "CANCELLED"
    assert cluster.api.state(doomed["key"])["job_status"] == "CANCELLED"
    cluster.start_worker(workers=2)
    later = cluster.api.queue(n=1)
    cluster.api.wait(later["key"])  # the worker went through the queue
    assert cluster.api.state(doomed["key"])["job_status"] == "CANCELLED"
    task_id = cluster.run(doomed["run_id"]).task_id
    assert [e for e in cluster.ledger.executions() if e.task_id == task_id] == []
    assert not cluster.exists(doomed["key"])
    cluster.account(ended=1)


def test_a_cancelled_running_run_stops_leaves_no_output_and_runs_again_when_resubmitted(cluster: Cluster) -> None:
    cluster.fault = "cancel a running run, then submit it again"
    cluster.start_service(workers=1)
    gate = cluster.tmp / "gate"  # never created: the attempt ends only if the cancel stops it
    [running] = cluster.start_runs(1, gate=str(gate))
    child = cluster.ledger.executions()[0].pid

    cancelled = cluster.api.cancel(running["run_id"])

    assert cancelled.status_code == 200, cancelled.text
    status = cluster.api.state(running["key"])  # the cancel is answered once its steps are over too
    assert status["job_status"] == "CANCELLED", status
    assert [(s["task"], s["state"]) for s in status["steps"]] == [("LedgerTask", "CANCELLED")], status
    waitfor(lambda: not alive(child), 60, "the cancelled attempt's process to end")
    assert not cluster.exists(running["key"])
    assert cluster.ledger.count("end") == 0
    stderr = cluster.read(running["key"].replace("out.txt", "log/stderr.log"))  # the interrupted step's logs
    assert stderr.strip().endswith("interrupted: the run was cancelled or reclaimed"), stderr
    assert [(s["task"], s["state"]) for s in cluster.api.state(running["key"])["steps"]] == [
        ("LedgerTask", "CANCELLED")
    ]
    worker_log = cluster.worker_log()
    assert "Traceback" not in worker_log and "could not save the logs" not in worker_log, worker_log
    again = cluster.api.cancel(running["run_id"])
    assert again.status_code == 409, again.text
    assert cluster.api.cancel("0" * 32).status_code == 404

    gate.touch()
    resubmitted = cluster.api.queue(n=0, gate=str(gate))

    assert resubmitted["run_id"] != running["run_id"] and resubmitted["created"] is True
    done = cluster.api.wait(resubmitted["key"], timeout=60)
    assert done["run_id"] == resubmitted["run_id"] and done["attempt"] == 1
    assert cluster.ledger.count("end") == 1
    cluster.account(ended=1)


def test_a_step_that_ends_within_a_heartbeat_of_its_cancel_leaves_no_output(cluster: Cluster) -> None:
    """With the default heartbeat (2 s), a running step is let end the moment its run's cancel is answered, before
    the next heartbeat could tell it: the API promises that the step leaves no output, and the run stays CANCELLED."""
    cluster.fault = "cancel a running step, then let it end at once (defaults: 2 s / 20 s)"
    cluster.start_service(workers=1, heartbeat_interval=2.0, lease_timeout=20.0)
    gate = cluster.tmp / "gate"
    running = cluster.api.queue(n=0, gate=str(gate))
    waitfor(lambda: cluster.ledger.count("start") == 1, 60, "the run to start", interval=0.01)
    child = cluster.ledger.executions()[0].pid

    cancelled = cluster.api.cancel(running["run_id"])
    gate.touch()

    assert cancelled.status_code == 200, cancelled.text
    waitfor(lambda: not alive(child), 60, "the cancelled attempt's process to end")
    status = cluster.api.state(running["key"])
    assert not cluster.exists(running["key"]), f"the cancelled step wrote its output; the status says {status}"
    assert cluster.ledger.count("end") == 0
    assert status["job_status"] == "CANCELLED", status
    cluster.account(ended=1)
