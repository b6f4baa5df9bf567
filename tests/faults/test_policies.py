"""Failures handled by policy: retries that resume at the failed step, per-task retry counts, SIGTERM drains."""

from __future__ import annotations

import signal
import subprocess

from harness import LUIGI_CFG
from nectar.luigid import SchedulerClient
from nectar.registry import RunState
from tests.faults.conftest import Cluster, alive, waitfor
from tests.helpers.luigid import luigid_tasks


def test_a_retry_resumes_at_the_failed_step(cluster: Cluster) -> None:
    cluster.fault = "Step2 of 3 fails its first attempt (retries=1)"
    cluster.settings = cluster.settings.replace(retries=1, retry_delay=0.1)
    cluster.start_service(workers=1)

    run = cluster.api.queue("Step3Task", n=0, step2_fails=1)

    done = cluster.api.wait(run["key"])
    assert (done["attempt"], done["max_attempts"], done["error"]) == (2, 2, None), done
    assert {s["task"]: s["state"] for s in done["steps"]} == dict.fromkeys(
        ("Step1Task", "Step2Task", "Step3Task"), "DONE"
    )
    counts = {
        task: tuple(cluster.ledger.count(word, task) for word in ("start", "fail", "end"))
        for task in ("Step1Task", "Step2Task", "Step3Task")
    }
    assert counts == {"Step1Task": (1, 0, 1), "Step2Task": (2, 1, 1), "Step3Task": (1, 0, 1)}
    cluster.account()


def test_a_task_retries_attribute_overrides_the_default_policy(cluster: Cluster) -> None:
    cluster.fault = "task retries=0 over default 2; task retries=3 over default 0"
    cluster.settings = cluster.settings.replace(retries=2)
    cluster.start_service(workers=1)

    no_retry = cluster.api.queue("NoRetryTask", n=0, fails=1)  # the default (2 retries) would let it succeed

    failed = cluster.api.wait(no_retry["key"], ("FAILED", "DONE"))
    assert (failed["job_status"], failed["attempt"], failed["max_attempts"]) == ("FAILED", 1, 1), failed
    assert failed["failed_step"] == "NoRetryTask" and failed["error"] == "RuntimeError: planned failure 1 of 1"
    assert cluster.ledger.count("start", "NoRetryTask") == 1

    cluster.stop_api()
    cluster.settings = cluster.settings.replace(retries=0)
    cluster.start_api()
    four = cluster.api.queue("FourAttemptsTask", n=0, fails=3)  # the default (no retry) would fail it

    done = cluster.api.wait(four["key"], ("DONE", "FAILED"), timeout=60)
    assert (done["job_status"], done["attempt"], done["max_attempts"]) == ("DONE", 4, 4), done
    assert [cluster.ledger.count(word, "FourAttemptsTask") for word in ("start", "fail", "end")] == [4, 3, 1]
    cluster.account(ended=1)


def test_sigterm_lets_a_short_task_finish_within_the_drain_grace(cluster: Cluster) -> None:
    cluster.fault = "SIGTERM a worker running a 1 s task (drain_grace=60)"
    worker = cluster.start_service(workers=1, drain_grace=60)  # a grace a loaded machine cannot miss
    [run] = cluster.start_runs(1, sleeps="1")

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=120) == 0
    assert cluster.run(run["run_id"]).state == RunState.DONE
    assert cluster.api.state(run["key"])["job_status"] == "DONE"
    assert cluster.ledger.count("end") == 1
    cluster.account()


def test_sigterm_requeues_a_long_task_uncounted_after_the_drain_grace(cluster: Cluster) -> None:
    """The task's first attempt would run for an hour: the worker exits only if it stops the task itself."""
    cluster.fault = "SIGTERM a worker running an hour-long task (drain_grace=1)"
    worker = cluster.start_service(workers=1, drain_grace=1)
    [run] = cluster.start_runs(1, sleeps="3600,0.2")
    child = cluster.ledger.executions()[0].pid

    worker.send_signal(signal.SIGTERM)

    try:
        exit_code = worker.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker never exited: it waits for its task past the drain grace") from None
    assert exit_code == 0
    assert not alive(child)
    requeued = cluster.run(run["run_id"])
    assert (requeued.state, requeued.attempt) == (RunState.PENDING, 0), requeued
    status = cluster.api.state(run["key"])
    assert (status["job_status"], status["attempt"]) == ("PENDING", 0), status
    assert not cluster.exists(run["key"])
    assert cluster.ledger.count("end") == 0

    cluster.start_worker(workers=1)

    done = cluster.api.wait(run["key"], timeout=60)
    assert (done["run_id"], done["attempt"]) == (run["run_id"], 1)
    assert (cluster.ledger.count("start"), cluster.ledger.count("end")) == (2, 1)
    cluster.account()


def test_an_attempt_that_dies_while_its_worker_drains_is_no_failure_of_its_step_in_luigid(cluster: Cluster) -> None:
    """Its worker puts the run back in the queue, uncounted; luigid is told the same of its step: a failure luigid
    counted would, with ``retry_count = 1``, have disabled the step for the run's next attempt."""
    cluster.fault = "SIGTERM a worker (drain_grace=3600), then SIGKILL its attempt; luigid's retry_count = 1"
    config = cluster.tmp / "luigi.cfg"
    config.write_text(LUIGI_CFG.read_text().replace("[scheduler]\n", "[scheduler]\nretry_count = 1\n", 1))
    cluster.start_luigid(config)
    cluster.start_api()
    worker = cluster.start_worker(workers=1, drain_grace=3600)  # it waits for the attempt: the test ends it
    [run] = cluster.start_runs(1, sleeps="3600,0")
    child = cluster.ledger.executions()[0].pid

    worker.send_signal(signal.SIGTERM)
    waitfor(lambda: "stopping: waiting up to" in cluster.worker_log(), 60, "the worker to drain")
    cluster.kill_pids([child])

    assert worker.wait(timeout=120) == 0
    requeued = cluster.run(run["run_id"])
    assert (requeued.state, requeued.attempt) == (RunState.PENDING, 0), requeued
    listed = luigid_tasks(SchedulerClient(f"http://127.0.0.1:{cluster.luigid_port}", 5.0))
    assert [status for status, _ in listed.values()] == ["FAILED"], listed

    cluster.start_worker(workers=1)

    done = cluster.api.wait(run["key"], timeout=60)
    assert (done["run_id"], done["attempt"]) == (run["run_id"], 1)
    cluster.account()
