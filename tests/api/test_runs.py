"""Runs by id, cancel, the bounded queue's 503 with Retry-After, and the attempt fields of a status."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end

HELLO = "/api/chains/testchains/hello_luigiworld_chain"


def submit(client: FlaskClient, aparam: str) -> dict:
    answer = client.post(f"{HELLO}/WithDependencyTask", query_string={"aparam": aparam})
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["data"]


def test_a_run_is_found_by_id_with_its_links(client: FlaskClient) -> None:
    queued = submit(client, "by-id")
    answer = client.get(f"/api/runs/{queued['run_id']}")
    assert answer.status_code == 200
    run = answer.get_json()["data"]
    assert (run["run_id"], run["key"], run["job_status"], run["task"]) == (
        queued["run_id"],
        queued["key"],
        "PENDING",
        "testchains/hello_luigiworld_chain/WithDependencyTask",
    )
    assert run["params"] == {"aparam": "by-id"}
    assert (run["attempt"], run["max_attempts"], run["retry_at"]) == (0, 1, None)
    assert run["status_url"] == queued["status_url"]
    assert run["cancel_url"] == f"http://localhost/api/runs/{queued['run_id']}/cancel"


def test_a_run_and_its_state_have_one_name_in_every_answer_and_in_the_openapi_document(client: FlaskClient) -> None:
    """``/api/runs`` items said ``id`` and ``state``; submissions and statuses say ``run_id`` and ``job_status``."""
    queued = submit(client, "one-name")
    status = client.get(queued["status_url"]).get_json()["data"]
    listed = client.get("/api/runs").get_json()["data"][0]
    one = client.get(f"/api/runs/{queued['run_id']}").get_json()["data"]
    cancelled = client.post(f"/api/runs/{queued['run_id']}/cancel").get_json()["data"]
    for answer in (queued, status, listed, one, cancelled):
        assert answer["run_id"] == queued["run_id"] and "id" not in answer and "state" not in answer, answer
        assert answer["job_status"] in {"PENDING", "CANCELLED"}
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    for name in ("Run", "RunDetail", "Status", "Submission"):
        assert {"run_id", "job_status"} <= set(schemas[name]["properties"]), name
        assert not {"id", "state"} & set(schemas[name]["properties"]), name


def test_an_unknown_run_is_404_naming_it(client: FlaskClient) -> None:
    for answer in (client.get("/api/runs/nope"), client.post("/api/runs/nope/cancel")):
        assert answer.status_code == 404 and answer.get_json()["message"] == "no run nope"


def test_cancel_a_queued_run_then_409_and_a_new_post_queues_again(client: FlaskClient) -> None:
    queued = submit(client, "cancel-me")
    cancelled = client.post(f"/api/runs/{queued['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["message"] == "cancelled"
    assert cancelled.get_json()["data"]["job_status"] == "CANCELLED"

    status = client.get(queued["status_url"]).get_json()["data"]
    assert (status["job_status"], status["error"], status["run_id"]) == (
        "CANCELLED",
        "cancelled by request",
        queued["run_id"],
    )
    again = client.post(f"/api/runs/{queued['run_id']}/cancel")
    assert again.status_code == 409
    assert again.get_json()["message"] == f"run {queued['run_id']} has already ended: CANCELLED"

    fresh = submit(client, "cancel-me")
    assert fresh["created"] and fresh["run_id"] != queued["run_id"]


def test_a_full_queue_is_503_with_retry_after_but_an_identical_run_is_still_answered(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    client = client_for(settings.replace(max_queue=2, retry_after=7))
    first = submit(client, "q0")
    submit(client, "q1")

    full = client.post(f"{HELLO}/WithDependencyTask", query_string={"aparam": "q2"})
    assert full.status_code == 503
    assert full.headers["Retry-After"] == "7"
    assert full.get_json()["message"] == "queue unavailable: 2 runs are queued, the most this service accepts"

    same = client.post(f"{HELLO}/WithDependencyTask", query_string={"aparam": "q0"})
    assert same.status_code == 202 and same.get_json()["data"]["run_id"] == first["run_id"]


def test_a_status_shows_the_attempt_and_when_a_failed_run_is_retried(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    client = client_for(settings.replace(retries=2, retry_delay=60))
    queued = submit(client, "retried")
    runs = closed_at_end(SQLiteRunStore(settings.registry_path))
    attempt = runs.claim("w")  # what a worker does: claim attempt 1, which fails with retries left
    assert attempt is not None and attempt.attempt == 1
    runs.fail(attempt.id, 1, "TestS3Task", "OSError: disk full")

    status = client.get(queued["status_url"]).get_json()["data"]
    assert (status["job_status"], status["attempt"], status["max_attempts"]) == ("PENDING", 1, 3)
    assert status["failed_step"] == "TestS3Task" and status["error"] == "OSError: disk full"
    assert attempt.started_at is not None and status["retry_at"] > attempt.started_at + 59
    assert status["run_url"] == f"http://localhost/api/runs/{queued['run_id']}"


def test_runs_are_listed_newest_first_filtered_and_paginated(client: FlaskClient) -> None:
    queued = [submit(client, f"listed-{n}") for n in range(5)]
    client.post(f"/api/runs/{queued[1]['run_id']}/cancel")

    answer = client.get("/api/runs", query_string={"task": "WithDependencyTask", "page_size": 2, "page": 2})

    assert answer.status_code == 200
    assert json.loads(answer.headers["X-Pagination"]) == {
        "total": 5,
        "total_pages": 3,
        "first_page": 1,
        "last_page": 3,
        "page": 2,
        "previous_page": 1,
        "next_page": 3,
    }
    runs = answer.get_json()["data"]
    assert [r["run_id"] for r in runs] == [queued[2]["run_id"], queued[1]["run_id"]]
    assert runs[0]["status_url"] == queued[2]["status_url"]
    cancelled = client.get("/api/runs", query_string={"job_status": "CANCELLED", "chain": "hello_luigiworld_chain"})
    assert [r["run_id"] for r in cancelled.get_json()["data"]] == [queued[1]["run_id"]]
    assert client.get("/api/runs", query_string={"chain_type": "etl"}).get_json()["data"] == []
    assert client.get("/api/runs", query_string={"since": 4102444800}).get_json()["data"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"job_status": "BURNING"}, "job_status"),
        ({"state": "DONE"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"until": "nan"}, "until"),
        ({"task": "../x"}, "task"),
        ({"chain_type": "__class__."}, "chain_type"),
        ({"page_size": 501}, "page_size"),
        ({"page": 0}, "page"),
    ],
)
def test_a_bad_runs_query_is_422_naming_the_field(client: FlaskClient, query: dict, field: str) -> None:
    answer = client.get("/api/runs", query_string=query)
    assert answer.status_code == 422
    assert field in answer.get_json()["errors"]


def test_a_page_beyond_any_offset_is_422_not_a_crash(client: FlaskClient) -> None:
    answer = client.get("/api/runs", query_string={"page": 10**25})
    assert answer.status_code == 422 and "page" in answer.get_json()["errors"]
