"""Logs by key: the live file while a task runs, the stored copy once it ended, else 404."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.task import live_log_paths

KEY = TargetKey("testchains", "hello_luigiworld_chain", "TestS3Task", "b" * 32)


def logs(client: FlaskClient, stream: str, key: TargetKey = KEY):
    return client.get("/api/logs", query_string={"chain": key.path, "stream": stream})


@pytest.mark.parametrize(("stream", "index", "stored_name"), [("stdout", 0, STDOUT_FILE), ("stderr", 1, STDERR_FILE)])
def test_the_live_log_wins_over_the_stored_one(
    client: FlaskClient, settings: Settings, stream: str, index: int, stored_name: str
) -> None:
    stored = settings.local_targets_dir / KEY.with_file(stored_name).path
    stored.parent.mkdir(parents=True)
    stored.write_text(f"{stream} of the last run\n")
    answer = logs(client, stream)
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == f"{stream} of the last run\n"

    live = live_log_paths(KEY)[index]
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_text(f"{stream} of the run going on\n")
    assert logs(client, stream).get_data(as_text=True) == f"{stream} of the run going on\n"


def test_no_log_at_all_is_404(client: FlaskClient) -> None:
    answer = logs(client, "stdout")
    assert answer.status_code == 404 and "stdout" in answer.get_json()["message"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"chain": KEY.path, "stream": "stdlog"}, 422, "stream"),
        ({"stream": "stdout"}, 422, "chain"),
        ({"chain": "chains/x", "stream": "stdout"}, 400, None),
    ],
)
def test_bad_log_queries(client: FlaskClient, query: dict, status: int, field: str | None) -> None:
    answer = client.get("/api/logs", query_string=query)
    assert answer.status_code == status
    if field:
        assert field in answer.get_json()["errors"]
