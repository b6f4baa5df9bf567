"""/healthz: 200 ok; 200 degraded naming luigid when only it is down; 503 naming the registry or store."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.conftest import free_port


def test_healthy_with_a_real_scheduler(
    settings: Settings, luigid: str, client_for: Callable[[Settings], FlaskClient]
) -> None:
    answer = client_for(settings.replace(scheduler_url=luigid)).get("/healthz")
    assert answer.status_code == 200
    data = answer.get_json()["data"]
    assert set(data) == {"registry", "store", "scheduler"}
    assert all(check["ok"] for check in data.values())
    assert luigid in data["scheduler"]["detail"]


def test_without_a_scheduler_only_registry_and_store_are_checked(client: FlaskClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and set(answer.get_json()["data"]) == {"registry", "store"}


def test_a_closed_scheduler_port_is_degraded_naming_the_scheduler_and_runs_are_still_accepted(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    closed = settings.replace(scheduler_url=f"http://127.0.0.1:{free_port()}", scheduler_timeout=0.5)
    client = client_for(closed)
    answer = client.get("/healthz")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["message"] == "degraded: scheduler unavailable; runs are accepted and wait in the queue"
    assert body["data"]["scheduler"]["ok"] is False and body["data"]["store"]["ok"] is True

    queued = client.post("/api/chains/testchains/hello_luigiworld_chain/TestS3Task")
    assert queued.status_code == 202
    status = client.get(queued.get_json()["data"]["status_url"])
    assert status.status_code == 200 and status.get_json()["data"]["job_status"] == "PENDING"


def test_an_unreachable_s3_store_is_503_naming_the_store(
    s3_settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    missing = s3_settings.replace(s3_bucket="no-such-bucket-for-nectar")
    answer = client_for(missing).get("/healthz")
    assert answer.status_code == 503 and "store" in answer.get_json()["message"]
