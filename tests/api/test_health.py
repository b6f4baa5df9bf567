"""/healthz: 200 ok; 200 degraded naming luigid when only it is down; 503 naming the registry or store;
a word per dependency to anyone, what the checks found only to a request with an API token."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from nectar.auth import digest
from nectar.config import Settings
from tests.conftest import free_port

READER = "reader-token-0123456789"
BEARER = {"Authorization": f"Bearer {READER}"}


def with_reader(settings: Settings) -> Settings:
    """``settings`` with API tokens on: one read token, READER."""
    return settings.replace(api_tokens=f"{digest(READER).hex()}:read:dashboard")


def test_healthy_with_a_real_scheduler(
    settings: Settings, luigid: str, client_for: Callable[[Settings], FlaskClient]
) -> None:
    answer = client_for(with_reader(settings.replace(scheduler_url=luigid))).get("/healthz", headers=BEARER)
    assert answer.status_code == 200
    data = answer.get_json()["data"]
    assert set(data) == {"registry", "store", "scheduler"}
    assert all(check["ok"] and check["status"] == "ok" for check in data.values())
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
    assert (body["data"]["scheduler"]["status"], body["data"]["store"]["status"]) == ("degraded", "ok")

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
    assert answer.get_json()["data"]["store"]["status"] == "down"


@pytest.mark.parametrize("tokens", [False, True], ids=["tokens-off", "tokens-on"])
def test_without_a_token_no_address_or_driver_text_is_shown_and_a_failure_is_logged_instead(
    settings: Settings, client_for: Callable[[Settings], FlaskClient], caplog: pytest.LogCaptureFixture, tokens: bool
) -> None:
    """The registry's path and the scheduler's address and connection error stay out of the answer."""
    scheduler = f"http://127.0.0.1:{free_port()}"
    closed = settings.replace(scheduler_url=scheduler, scheduler_timeout=0.5)
    client = client_for(with_reader(closed) if tokens else closed)
    with caplog.at_level(logging.INFO, logger="api.health"):
        anonymous = [client.get("/healthz", headers=headers) for headers in ({}, {"Authorization": "Bearer nope"})]
    for answer in anonymous:
        text = answer.get_data(as_text=True)
        assert answer.status_code == 200 and scheduler not in text and str(settings.data_dir) not in text
        assert "Error" not in text and "refused" not in text
        statuses = {name: check["status"] for name, check in answer.get_json()["data"].items()}
        assert statuses == {"registry": "ok", "store": "ok", "scheduler": "degraded"}
    failures = [r.getMessage() for r in caplog.records if "health check scheduler failed" in r.getMessage()]
    assert len(failures) == 1 and scheduler in failures[0], caplog.text  # logged once, not on every probe
    with_token = client.get("/healthz", headers=BEARER).get_json()["data"]
    if tokens:
        assert scheduler in with_token["scheduler"]["detail"]
        assert str(settings.data_dir) in with_token["registry"]["detail"]
    else:  # a token that cannot be checked shows nothing more
        assert scheduler not in with_token["scheduler"]["detail"] and "log" in with_token["scheduler"]["detail"]
