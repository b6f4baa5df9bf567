"""Status by key, end to end with real worker processes: local (signed API URL) and S3 (presigned)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from api.schemas import StatusEnvelope, StatusSchema, StepSchema
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RunState, Step
from nectar.service import Nectar
from nectar.stores import get_store
from nectar.task import create_live_logs
from tests.api.conftest import finished

StartWorker = Callable[..., subprocess.Popen[bytes]]
HELLO = "/api/chains/testchains/hello_luigiworld_chain"
DIGEST = "0" * 32


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("bad", "must start with 'chains/'"),
        ("chains/a/b/C", "chains/<type>/<chain>/<Task>/<md5>/<file>"),
        (f"chains/a/b/C/{DIGEST[:-1]}/out.txt", "digest"),
        (f"chains/a/../C/{DIGEST}/out.txt", "'..'"),
        (f"chains/a/b-c/C/{DIGEST}/out.txt", "chain 'b-c'"),
        (f"chains//b/C/{DIGEST}/out.txt", "empty segment"),
        (f"chains/a/b/C/{DIGEST}/.hidden", "file"),
        (f"chains/a/b/C/{DIGEST}/out.txt\\x", "backslash"),
        ("", "empty"),
    ],
)
def test_malformed_keys_are_400_saying_what_is_wrong(client: FlaskClient, key: str, says: str) -> None:
    answer = client.get("/api/chainstatus", query_string={"chain": key})
    assert answer.status_code == 400
    assert says in answer.get_json()["message"]


def test_a_missing_key_is_422_naming_the_field(client: FlaskClient) -> None:
    answer = client.get("/api/chainstatus")
    assert answer.status_code == 422
    assert "chain" in answer.get_json()["errors"]


def test_a_key_never_submitted_is_404(client: FlaskClient) -> None:
    key = f"chains/testchains/hello_luigiworld_chain/TestS3Task/{DIGEST}/out.txt"
    answer = client.get("/api/chainstatus", query_string={"chain": key})
    assert answer.status_code == 404
    assert key in answer.get_json()["message"]


def test_local_run_to_done_then_an_idempotent_repeat(
    settings: Settings, luigid: str, client_for: Callable[[Settings], FlaskClient], start_worker: StartWorker
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    client = client_for(settings)
    submitted = client.post(f"{HELLO}/WithDependencyTask?aparam=api-local")
    assert submitted.status_code == 202
    queued = submitted.get_json()["data"]
    start_worker(settings)

    status = finished(client, queued["status_url"])
    assert status["job_status"] == "DONE", status
    assert status["run_id"] == queued["run_id"]
    steps = {(s["task"], s["state"]) for s in status["steps"]}
    assert steps == {("TestS3Task", "DONE"), ("WithDependencyTask", "DONE")}
    assert status["scheduler_url"].startswith(f"{luigid}/static/visualiser/index.html#tab=graph&taskId=")
    key = TargetKey.parse(status["key"])
    url = status["resource_url"]
    assert url.startswith("http://localhost/api/files?key=chains/") and status["expires_in"] == settings.url_expiry
    download = client.get(url)
    assert download.status_code == 200
    assert download.data == (settings.local_targets_dir / key.path).read_bytes() == b"hello luigi world, api-local\n"

    logs = client.get(status["stdout_url"])
    assert logs.status_code == 200 and logs.mimetype == "text/plain"
    assert "extending 'hello luigi world' with 'api-local'" in logs.get_data(as_text=True)

    again = client.post(f"{HELLO}/WithDependencyTask", json={"aparam": "api-local"})
    assert again.status_code == 200
    data = again.get_json()["data"]
    assert data["job_status"] == "DONE" and data["created"] is False
    assert data["run_id"] == queued["run_id"] and data["key"] == key.path
    assert client.get(data["resource_url"]).data == download.data
    nectar = client.application.extensions["nectar"]
    assert nectar.runs.count() == 1


def test_s3_run_to_done_answers_a_presigned_url(
    s3_settings: Settings, client_for: Callable[[Settings], FlaskClient], start_worker: StartWorker
) -> None:
    client = client_for(s3_settings)
    queued = client.post(f"{HELLO}/WithDependencyTask", json={"aparam": "api-s3"}).get_json()["data"]
    start_worker(s3_settings)

    status = finished(client, queued["status_url"])
    assert status["job_status"] == "DONE", status
    assert status["scheduler_url"] is None
    url = status["resource_url"]
    assert s3_settings.bucket in url and "Signature=" in url and "/api/files" not in url
    download = requests.get(url, timeout=60)
    assert download.status_code == 200
    key = TargetKey.parse(status["key"])
    stored = b"".join(get_store(s3_settings).iter_bytes(key))
    assert download.content == stored == b"hello luigi world, api-s3\n"

    logs = client.get(status["stdout_url"])
    assert "extending 'hello luigi world' with 'api-s3'" in logs.get_data(as_text=True)
    again = client.post(f"{HELLO}/WithDependencyTask?aparam=api-s3")
    assert again.status_code == 200 and again.get_json()["data"]["job_status"] == "DONE"


def test_a_failed_run_names_its_step(
    app: Flask, client: FlaskClient, settings: Settings, start_worker: StartWorker, write_chain: Callable
) -> None:
    write_chain(
        "faulty/crash_chain",
        "from nectar import NectarTask\n"
        "class CrashTask(NectarTask):\n"
        "    def run(self):\n"
        "        print('about to fail')\n"
        "        raise RuntimeError('crashed on purpose')\n",
    )
    queued = client.post("/api/chains/faulty/crash_chain/CrashTask").get_json()["data"]
    start_worker(settings)
    status = finished(client, queued["status_url"])
    assert status["job_status"] == "FAILED"
    assert status["failed_step"] and "CrashTask" in status["failed_step"]
    assert status["resource_url"] is None
    assert "crashed on purpose" in client.get(status["stderr_url"]).get_data(as_text=True)


def _to_state(nectar: Nectar, run_id: str, state: str) -> None:
    """Move a queued run to ``state`` through the registry, as a worker would (no worker needed)."""
    if state == "PENDING":
        return
    if state == "CANCELLED":
        nectar.runs.cancel(run_id)
        return
    run = nectar.runs.claim("test:1", run_id)
    assert run is not None
    step = Step(run_id, run.task_id, run.task, run.key, "RUNNING", executed=True)
    create_live_logs(TargetKey.parse(run.key))  # as the worker does before it says RUNNING
    nectar.runs.record_step(step)
    if state == "RETRYING":  # PENDING again after a failed attempt: retry_at says when
        assert nectar.runs.fail(run_id, run.attempt, "TestS3Task", "RuntimeError: once") == RunState.PENDING
    elif state == "FAILED":
        nectar.runs.record_step(replace(step, state="FAILED", error="RuntimeError: broken"))
        assert nectar.runs.fail(run_id, run.attempt, "TestS3Task", "RuntimeError: broken") == RunState.FAILED
    elif state == "DONE":
        nectar.store.write_text(TargetKey.parse(run.key), "done\n")
        nectar.runs.record_step(replace(step, state="DONE"))
        assert nectar.runs.complete(run_id, run.attempt)


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "RETRYING", "FAILED", "CANCELLED", "DONE", "OUTSIDE"])
def test_every_answer_has_exactly_the_documented_fields_and_types(
    settings: Settings, client_for: Callable[[Settings], FlaskClient], state: str
) -> None:
    """The view shapes its answer itself (no schema dump): exactly what StatusEnvelope documents, no more, no less."""
    retries = 1 if state == "RETRYING" else 0
    client = client_for(settings.replace(retries=retries, retry_delay=60.0, scheduler_url="http://127.0.0.1:9"))
    nectar = client.application.extensions["nectar"]
    if state == "OUTSIDE":  # an output made outside the registry: no run at all
        key = TargetKey.parse(f"chains/testchains/hello_luigiworld_chain/TestS3Task/{DIGEST}/out.txt")
        nectar.store.write_text(key, "by hand\n")
        status_url = f"/api/chainstatus?chain={key.path}"
    else:
        queued = client.post(f"{HELLO}/WithDependencyTask?aparam={state}").get_json()["data"]
        _to_state(nectar, queued["run_id"], state)
        status_url = queued["status_url"]

    body = client.get(status_url).get_json()

    data = body["data"]
    assert data["job_status"] == {"RETRYING": "PENDING", "OUTSIDE": "DONE"}.get(state, state)
    assert set(data) == set(StatusSchema().fields)
    as_documented = StatusEnvelope().dump(body)  # every value already of its documented JSON type (true, not 1)
    assert json.dumps(as_documented, sort_keys=True) == json.dumps(body, sort_keys=True)
    assert all(set(step) == set(StepSchema().fields) for step in data["steps"])
    assert all(type(step["executed"]) is bool for step in data["steps"])  # marshmallow would let a 1 through
    assert len(data["steps"]) == (0 if state in {"PENDING", "CANCELLED", "OUTSIDE"} else 1)
    assert (data["retry_at"] is not None) == (state == "RETRYING")
    assert (data["resource_url"] is not None) == (state in {"DONE", "OUTSIDE"})
    if state in {"PENDING", "CANCELLED"}:  # never started: no task of the run has a log, and the note says so
        assert (data["stdout_url"], data["stderr_url"], data["logs_task"]) == (None, None, None)
        said = "has not started yet" if state == "PENDING" else "did not run"
        assert data["logs_note"] == f"WithDependencyTask {said}: it has no log"
    elif state == "OUTSIDE":  # made by hand: no log here to link to, and the note says so
        assert (data["stdout_url"], data["stderr_url"], data["logs_task"]) == (None, None, None)
        assert data["logs_note"] == "TestS3Task was not run by this service: it left no log here"
    else:
        assert (data["logs_task"], data["logs_note"]) == (TargetKey.parse(data["key"]).task, None)
        for stream in ("stdout", "stderr"):  # the log URLs name the task's out.txt and the stream
            assert data[f"{stream}_url"] == f"http://localhost/api/logs?chain={data['key']}&stream={stream}"
    for step in data["steps"]:
        assert step["stdout_url"] == f"http://localhost/api/logs?chain={step['key']}&stream=stdout"
    if state != "OUTSIDE":
        assert data["run_url"] == f"http://localhost/api/runs/{data['run_id']}"
        assert data["scheduler_url"].startswith("http://127.0.0.1:9/static/visualiser/")


def test_unknown_query_arguments_are_ignored(client: FlaskClient) -> None:
    """A cache-busting argument (``&_=<time>``, as browsers' pollers add) changes nothing."""
    queued = client.post(f"{HELLO}/TestS3Task").get_json()["data"]
    answer = client.get(f"{queued['status_url']}&_=1700000000000")
    assert answer.status_code == 200 and answer.get_json()["data"]["run_id"] == queued["run_id"]


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_symlink_out_of_the_local_store_never_answers_done(
    client: FlaskClient, settings: Settings, tmp_path: Path, link: str
) -> None:
    """An out.txt (or a folder on its way) that links outside the store is refused, not reported as DONE."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "out.txt").write_text("not ours\n")
    key = f"chains/testchains/hello_luigiworld_chain/TestS3Task/{DIGEST}/out.txt"
    path = settings.local_targets_dir / key
    linked, to = (path, outside / "out.txt") if link == "file" else (path.parent, outside)
    linked.parent.mkdir(parents=True)
    linked.symlink_to(to)

    answer = client.get("/api/chainstatus", query_string={"chain": key})

    assert answer.status_code == 400
    assert "outside the local targets folder" in answer.get_json()["message"]


def test_the_chain_argument_and_the_answer_are_documented(client: FlaskClient) -> None:
    operation = client.get("/api/openapi.json").get_json()["paths"]["/api/chainstatus"]["get"]
    chain = next(p for p in operation["parameters"] if p["name"] == "chain")
    assert chain["in"] == "query" and chain["required"] is True
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/StatusEnvelope"}


def test_links_follow_the_host_and_scheme_each_request_came_by(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    """Absolute URLs are kept per scheme, host and root: two names of the service never get each other's."""
    client = client_for(settings.replace(allowed_hosts="nectar.internal,nectar.example.com"))
    queued = client.post(f"{HELLO}/TestS3Task").get_json()["data"]
    _to_state(client.application.extensions["nectar"], queued["run_id"], "RUNNING")  # a task with logs
    path = queued["status_url"].split("://", 1)[1].split("/", 1)[1]
    answers = {
        base: client.get(f"/{path}", base_url=base).get_json()["data"]
        for base in ("http://nectar.internal", "https://nectar.example.com", "http://nectar.internal/prefix")
    }
    for base, data in answers.items():
        for name in ("run_url", "stdout_url", "stderr_url"):
            assert data[name].startswith(f"{base}/api/"), (base, name, data[name])
    assert answers["http://nectar.internal"]["run_url"] == f"http://nectar.internal/api/runs/{queued['run_id']}"
