"""Batch submission: JSON lists and CSV (body or upload), one answer per row, all-or-nothing, idempotent, limits."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry.sqlite import SQLiteRunStore
from tests.api.conftest import finished
from tests.helpers.registries import closed_at_end

BATCH = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask/batch"


def rows_of(answer: TestResponse) -> list[dict]:
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["data"]["rows"]


def registry(settings: Settings) -> SQLiteRunStore:
    return closed_at_end(SQLiteRunStore(settings.registry_path))


def test_each_row_is_answered_on_its_own(client: FlaskClient, settings: Settings) -> None:
    answer = client.post(BATCH, json=[{"aparam": "a"}, {"aparam": "b"}, {"nope": "x"}, {"aparam": "a"}])

    rows = rows_of(answer)
    assert [(r["row"], r["status"]) for r in rows] == [(1, 202), (2, 202), (3, 422), (4, 202)]
    assert rows[2]["errors"] == {
        "aparam": ["missing required parameter"],
        "nope": ["unknown parameter (known: aparam)"],
    }
    assert rows[0]["created"] and rows[1]["created"] and not rows[3]["created"]
    assert rows[3]["run_id"] == rows[0]["run_id"]  # the same parameters twice: one run
    assert answer.get_json()["data"]["counts"] == {"queued": 3, "done": 0, "invalid": 1, "unavailable": 0}
    assert registry(settings).count() == 2
    status = client.get(rows[1]["status_url"]).get_json()["data"]
    assert (status["job_status"], status["run_id"]) == ("PENDING", rows[1]["run_id"])


def test_sending_the_same_rows_again_queues_nothing_new(client: FlaskClient, settings: Settings) -> None:
    sent = [{"aparam": f"again-{n}"} for n in range(20)]
    first = rows_of(client.post(BATCH, json=sent))

    second = rows_of(client.post(BATCH, json=sent))

    assert [r["run_id"] for r in second] == [r["run_id"] for r in first]
    assert not any(r["created"] for r in second)
    assert registry(settings).count() == 20


def test_a_row_whose_output_exists_is_done_with_its_url(client: FlaskClient, settings: Settings) -> None:
    key = TargetKey.parse(rows_of(client.post(BATCH, json=[{"aparam": "made"}]))[0]["key"])
    path = settings.local_targets_dir / key.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello luigi world, made\n")
    latest = registry(settings).latest(key.path)
    assert latest is not None
    client.post(f"/api/runs/{latest.id}/cancel")

    [row] = rows_of(client.post(BATCH, json=[{"aparam": "made"}]))

    assert (row["status"], row["job_status"]) == (200, "DONE")
    assert client.get(row["resource_url"]).data == b"hello luigi world, made\n"


def test_all_or_nothing_queues_nothing_when_a_row_is_invalid(client: FlaskClient, settings: Settings) -> None:
    answer = client.post(f"{BATCH}?atomic=true", json=[{"aparam": "ok"}, {"aparam": "ok2", "extra": 1}, {}])

    assert answer.status_code == 422
    assert answer.get_json()["errors"] == {
        "2.extra": ["unknown parameter (known: aparam)"],
        "3.aparam": ["missing required parameter"],
    }
    assert registry(settings).count() == 0
    assert [r["status"] for r in rows_of(client.post(f"{BATCH}?atomic=true", json=[{"aparam": "ok"}]))] == [202]


CSV = "aparam\nfirst\nsecond\n"


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.post(BATCH, data=CSV, content_type="text/csv"),
        lambda c: c.post(BATCH, data=("\ufeff" + CSV).encode(), content_type="text/csv; charset=utf-8"),
        lambda c: c.post(
            BATCH, data={"file": (io.BytesIO(CSV.encode()), "rows.csv")}, content_type="multipart/form-data"
        ),
    ],
    ids=["body", "body-with-bom", "upload"],
)
def test_a_csv_is_a_header_then_one_row_a_line(
    client: FlaskClient, send: Callable[[FlaskClient], TestResponse]
) -> None:
    rows = rows_of(send(client))

    assert [(r["row"], r["status"]) for r in rows] == [(1, 202), (2, 202)]
    params = [client.get(f"/api/runs/{r['run_id']}").get_json()["data"]["params"] for r in rows]
    assert params == [{"aparam": "first"}, {"aparam": "second"}]


def test_an_empty_csv_cell_leaves_the_parameter_at_its_default(client: FlaskClient) -> None:
    csv = "day,rows\n2024-01-31,\n2024-02-01,5\n"
    rows = rows_of(
        client.post("/api/chains/etl/sales_chain/GenerateSalesTask/batch", data=csv, content_type="text/csv")
    )

    assert [r["status"] for r in rows] == [202, 202], rows
    params = [client.get(f"/api/runs/{r['run_id']}").get_json()["data"]["params"] for r in rows]
    assert params[0]["rows"] == "1000" and params[1]["rows"] == "5"


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"json": {"aparam": "x"}}, "_body", "JSON list"),
        ({"json": [1, 2]}, "_body", "JSON list"),
        ({"json": []}, "_body", "no rows"),
        ({"data": "", "content_type": "text/csv"}, "_body", "no header"),
        ({"data": "aparam\nx,y\n", "content_type": "text/csv"}, "_body", "more cells than the header"),
        ({"data": b"aparam\n\xff\n", "content_type": "text/csv"}, "_body", "not UTF-8"),
        ({"data": {"other": (io.BytesIO(b"aparam\nx\n"), "f.csv")}, "content_type": "multipart/form-data"}, "file", ""),
    ],
    ids=["object", "not-objects", "empty", "empty-csv", "ragged-csv", "not-utf8", "no-file-field"],
)
def test_a_batch_that_is_not_rows_is_422_saying_why(client: FlaskClient, kwargs: dict, field: str, says: str) -> None:
    answer = client.post(BATCH, **kwargs)

    assert answer.status_code == 422
    assert says in answer.get_json()["errors"][field][0]


def test_too_many_rows_is_413(settings: Settings, client_for: Callable[[Settings], FlaskClient]) -> None:
    client = client_for(settings.replace(max_batch=3))

    answer = client.post(BATCH, json=[{"aparam": str(n)} for n in range(4)])

    assert answer.status_code == 413 and "at most 3" in answer.get_json()["message"]
    assert registry(settings).count() == 0


def test_rows_beyond_a_full_queue_are_503_with_retry_after(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    client = client_for(settings.replace(max_queue=2, retry_after=7))

    answer = client.post(BATCH, json=[{"aparam": str(n)} for n in range(4)])

    assert [r["status"] for r in rows_of(answer)] == [202, 202, 503, 503]
    assert answer.headers["Retry-After"] == "7"
    assert answer.get_json()["data"]["counts"]["unavailable"] == 2


def test_an_unknown_task_is_404(client: FlaskClient) -> None:
    answer = client.post("/api/chains/testchains/hello_luigiworld_chain/NoSuchTask/batch", json=[{}])
    assert answer.status_code == 404 and "NoSuchTask" in answer.get_json()["message"]


def test_the_batch_runs_to_done(client: FlaskClient, settings: Settings, start_worker: Callable[..., object]) -> None:
    start_worker(settings, workers=2)
    rows = rows_of(client.post(BATCH, json=[{"aparam": f"run-{n}"} for n in range(4)]))

    for row in rows:
        assert finished(client, row["status_url"])["job_status"] == "DONE"


def test_a_cell_beyond_the_csv_readers_limit_is_422(client: FlaskClient) -> None:
    answer = client.post(BATCH, data="aparam\n" + "x" * 200_000 + "\n", content_type="text/csv")

    assert answer.status_code == 422 and "not a CSV the service can read" in answer.get_json()["errors"]["_body"][0]
