"""Status by key, end to end with real worker processes: local (signed API URL) and S3 (presigned)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.stores import get_store
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
    download = requests.get(url, timeout=10)
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
