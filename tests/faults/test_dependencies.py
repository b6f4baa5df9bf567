"""A dependency is down: luigid (runs wait in the queue) or the S3 store (answers name it, runs fail clearly)."""

from __future__ import annotations

from nectar.registry import RunState
from tests.faults.conftest import Cluster, waitfor

#: what a worker says when it finds luigid down, then back (it claims nothing in between)
NOT_CLAIMING, CLAIMING = "not claiming runs until luigid answers again", "luigid answers again: claiming runs"


def test_runs_wait_in_the_queue_while_luigid_is_down_and_run_when_it_is_back(cluster: Cluster) -> None:
    cluster.fault = "luigid down before submitting; started later"
    cluster.start_api()

    runs = [cluster.api.queue(n=n, sleeps="0.2") for n in range(4)]
    cluster.start_worker(workers=2)  # the runs are due before it first looks at luigid

    health = cluster.api.healthz()
    assert health.status_code == 200, health.text
    assert health.json()["message"].startswith("degraded: scheduler unavailable"), health.json()
    assert health.json()["data"]["scheduler"]["ok"] is False
    # it looked at luigid before claiming what was due, and found it down: the point at which it would have claimed
    waitfor(lambda: NOT_CLAIMING in cluster.worker_log(), 60, "the worker to find luigid down")
    for data in runs:
        status = cluster.api.state(data["key"])
        assert (status["job_status"], status["attempt"], status["error"]) == ("PENDING", 0, None), status
    assert cluster.ledger.count("start") == 0

    cluster.start_luigid()

    cluster.api.wait_all([r["key"] for r in runs], timeout=60)
    assert cluster.api.healthz().json()["message"] == "ok"
    for data in runs:
        assert cluster.run(data["run_id"]).attempt == 1
    said = cluster.worker_log()  # one process: its lines in the order it did things
    assert said.index(NOT_CLAIMING) < said.index(CLAIMING) < min(said.index(f"{r['run_id']} ") for r in runs), said
    assert said.count(": attempt 1 claimed") == len(runs), said
    cluster.account()


def test_s3_down_is_named_in_answers_fails_a_writing_run_clearly_and_runs_succeed_once_it_is_back(
    cluster: Cluster,
) -> None:
    cluster.fault = "S3 (moto) down: submit, status, a task writing to it; moto restarted"
    cluster.use_s3()
    cluster.start_service(workers=1)
    known = cluster.api.queue(n=0)
    cluster.api.wait(known["key"])
    gate = cluster.tmp / "gate"  # it writes its output once S3 is down, however slow the test is to stop it
    writer = cluster.api.queue(n=1, gate=str(gate))
    waitfor(lambda: cluster.ledger.count("start") == 2, 60, "the writing run to start")

    cluster.stop_moto()
    gate.touch()

    waitfor(lambda: cluster.run(writer["run_id"]).state.active is False, 60, "the writing run to end")
    answer = cluster.api.run(writer["run_id"])
    assert answer.status_code == 200, answer.text
    failed = answer.json()["data"]
    assert (failed["job_status"], failed["failed_step"], failed["attempt"]) == ("FAILED", "LedgerTask", 1), failed
    assert "Could not connect to the endpoint URL" in failed["error"], failed["error"]
    assert cluster.ledger.count("end") == 1 and cluster.ledger.count("fail") == 1

    refused = cluster.api.submit(n=2)
    assert refused.status_code == 503, refused.text
    assert refused.json()["message"].startswith("store unavailable"), refused.json()
    assert int(refused.headers["Retry-After"]) > 0
    status = cluster.api.status(known["key"])
    assert status.status_code == 503, status.text
    assert status.json()["message"].startswith("store unavailable"), status.json()
    assert int(status.headers["Retry-After"]) > 0
    health = cluster.api.healthz()
    assert health.status_code == 503 and health.json()["data"]["store"]["ok"] is False, health.text

    cluster.start_moto()

    assert not cluster.exists(writer["key"])
    again = cluster.api.queue(n=1, gate=str(gate))  # the writer's task again, its gate open
    assert again["run_id"] != writer["run_id"]
    done = cluster.api.wait(again["key"])
    assert done["attempt"] == 1
    assert cluster.run(writer["run_id"]).state == RunState.FAILED
    assert cluster.read(again["key"]).startswith(cluster.run(again["run_id"]).task_id)
    cluster.account(ended=1)


def test_a_missing_bucket_is_a_503_naming_it_and_fails_a_run_once_with_the_stores_own_error(cluster: Cluster) -> None:
    cluster.fault = "S3 bucket missing (moto up): submit refused; a run queued before it went fails once, named"
    cluster.use_s3()
    cluster.settings = cluster.settings.replace(env="qa", project_bucket="nobucket")  # moto has no qa.nobucket
    cluster.start_luigid()
    cluster.start_api()

    refused = cluster.api.submit(n=0)

    assert refused.status_code == 503, refused.text
    message = refused.json()["message"]
    assert message.startswith("store unavailable: S3 store s3://qa.nobucket:") and "NoSuchBucket" in message, message

    cluster.s3.create_bucket(Bucket="qa.nobucket")
    queued = cluster.api.queue(task="FourAttemptsTask", n=1)  # its policy allows four attempts
    cluster.s3.delete_bucket(Bucket="qa.nobucket")
    cluster.start_worker(workers=1)

    waitfor(lambda: cluster.run(queued["run_id"]).state.active is False, 60, "the run to end")
    failed = cluster.api.run(queued["run_id"]).json()["data"]
    assert (failed["job_status"], failed["attempt"], failed["failed_step"]) == ("FAILED", 1, "FourAttemptsTask"), failed
    assert "s3://qa.nobucket" in failed["error"] and "NoSuchBucket" in failed["error"], failed["error"]
    assert "missing" not in failed["error"]
    assert cluster.ledger.count("start") == 0  # it never ran: whether it was done could not be known
    worker_log = cluster.worker_log()
    assert worker_log.count("NoSuchBucket") == 1, worker_log  # once for its one attempt
    cluster.account(ended=1)
