"""A status answer's fields are put in the order the answer writes them (its keys sorted), for every shape of it: the
JSON encoder's sort of each object then finds it in order, and the bytes are those of a sorted dump all the same."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.auth
import pytest
from flask import Flask
from flask.testing import FlaskClient

import nectar.registry.sql
from api.context import facade
from api.envelope import compact_envelope, compact_provider
from api.status import status_body, status_data
from benchmarks.population import TASK, Probe, finished_run
from nectar import leases, signing
from nectar.config import Settings
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.registry import RunState, Step
from nectar.registry.sqlite import SQLiteRunStore
from tests.clock import Clock
from tests.helpers.registries import closed_at_end

NOW = time.time()
#: each shape of an answer: the run's state and what it carries (n: its probe; its output is stored for DONE only)
SHAPES: dict[str, dict[str, Any]] = {
    "done with its download URL": {"state": RunState.DONE},
    "running": {"state": RunState.RUNNING, "heartbeat_at": NOW, "worker": "w:1"},
    "running, its worker lost": {"state": RunState.RUNNING, "heartbeat_at": NOW - 3600, "worker": "w:1"},
    "failed with its error": {"state": RunState.FAILED, "failed_step": TASK, "error": "ValueError: no"},
    "waiting for data": {
        "state": RunState.WAITING,
        "waiting_since": NOW,
        "waiting_for": ("s3://bucket/in.csv",),
        "wait_until": NOW + 3600,
    },
}


def in_order(value: object) -> bool:
    """Whether every object in ``value`` has its keys in sorted order."""
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(in_order(item) for item in value.values())
    if isinstance(value, list):
        return all(in_order(item) for item in value)
    return True


def stored(settings: Settings) -> Callable[[TargetKey, str], None]:
    """Put a file at a key of the settings' store: the local folder, or the S3 bucket (moto's server)."""
    if settings.store_kind != "s3":

        def put_local(key: TargetKey, text: str) -> None:
            path = settings.local_targets_dir / key.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

        return put_local
    client = boto3.client("s3")
    return lambda key, text: client.put_object(Bucket=settings.bucket, Key=key.path, Body=text.encode())


@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("shape", SHAPES)
def test_an_answer_s_fields_are_put_in_the_order_it_writes_them(
    request: pytest.FixtureRequest,
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    shape: str,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the answers compared sign in the same second, and say the same time since a heartbeat (the registry's lease rule)
    clock = Clock(NOW).install(monkeypatch, signing, leases, nectar.registry.sql)
    if store == "s3":  # moto's server through the harness; S3's presigned links too (SigV2's expiry, SigV4's date)
        settings = request.getfixturevalue("s3_settings")
        clock.install(monkeypatch, botocore.auth)
        frozen = datetime.fromtimestamp(NOW, UTC).replace(tzinfo=None)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: frozen)
    client = client_for(settings)
    app = client.application
    fields = SHAPES[shape]
    probe = Probe(list(SHAPES).index(shape))
    run = dataclasses.replace(finished_run(probe, NOW), **fields)
    step_state = fields["state"].value if fields["state"] != RunState.WAITING else RunState.PENDING.value
    step = Step(run.id, run.task_id, TASK, run.key, step_state, executed=step_state != "PENDING", updated_at=NOW)
    closed_at_end(SQLiteRunStore(settings.registry_path)).import_runs([run], [step])
    put = stored(settings)
    if fields["state"] == RunState.DONE:
        put(probe.key, "probe\n")
    for name in (STDOUT_FILE, STDERR_FILE):  # its stored logs: every link handed out answers
        put(probe.key.with_file(name), "probe ran\n")
    path = f"/api/chainstatus?chain={probe.key.path}"

    body = client.get(path).get_data(as_text=True)
    with app.test_request_context(path):
        data = status_data(facade(), probe.key)

    answer = json.loads(body)
    assert answer["data"]["job_status"] == fields["state"].value
    if fields["state"] == RunState.RUNNING:  # a heartbeat an hour old: its worker lost, as the clock says
        lost = "worker lost: w:1 (no heartbeat for 3600s) during attempt 1; a worker will reclaim it"
        assert answer["data"]["error"] == (lost if fields["heartbeat_at"] < NOW else None)
    assert (store == "s3") == (f"s3://{settings.bucket}/" in body)  # the store's own answer
    if fields["state"] == RunState.DONE:  # its download link: S3's presigned URL, or the API's own signed one
        assert (store == "s3") == ("AWSAccessKeyId=" in body or "X-Amz-Signature=" in body)
    assert in_order(data)
    assert body == json.dumps(answer, sort_keys=True, separators=(",", ":")) + "\n"
    assert answer["data"] == json.loads(json.dumps(data))


#: a status answer's data (as status_data makes it), its URLs each one text met twice as status_data hands them out
URL = "http://host/api/files?key=chains/t/c/T/0/out.txt&expires=1&signature=ff"
LOGS = {"stderr_url": "http://host/api/logs?chain=k&stream=stderr", "stdout_url": "http://host/api/logs?chain=k"}
STEP = {"error": None, "executed": True, "key": "k", "log_note": None, "state": "DONE", **LOGS, "task": "T"}
DATA = {
    **dict.fromkeys(("error", "failed_step", "fire_time", "logs_note", "objects", "resource_note", "retry_at")),
    **dict.fromkeys(("schedule_id", "scheduler_url", "trigger_id", "wait_until", "waiting_for", "waiting_since")),
    "attempt": 1,
    "expires_in": 600,
    "job_status": "DONE",
    "key": "chains/t/c/T/0/out.txt",
    "logs_task": "T",
    "max_attempts": 1,
    "outputs": [{"note": None, "target": "/t/out.txt", "url": URL}],
    "resource_url": URL,
    "run_id": "01ab",
    "run_url": "http://host/api/runs/01ab",
    **LOGS,
    "steps": [STEP],
}
#: the data's variants: every kind of value a field may hold, text each encoder escapes, a shape of another kind
VARIANTS: dict[str, dict[str, Any]] = {
    "done": {},
    "waiting": {"waiting_for": ["s3://b/in.csv", "run:01"], "waiting_since": NOW, "wait_until": "2026-01-01T00:00Z"},
    "retrying": {"retry_at": 1e300, "error": 'a "quoted"\\path\n\x00\x1f~', "failed_step": "T", "objects": []},
    "non-ASCII and DEL": {"error": "Tâche\u2028 \x7f", "logs_note": "é"},
    "non-finite": {"retry_at": float("nan"), "waiting_since": float("inf")},
    "no run": {"attempt": None, "max_attempts": None, "expires_in": None, "run_id": None, "run_url": None},
    "no URLs": {"resource_url": None, "stdout_url": None, "stderr_url": None, "outputs": [], "steps": []},
    "URLs equal, not the same": {"resource_url": "".join(URL), "steps": [{**STEP, "stdout_url": "x"}]},
    "steps": {"steps": [{**STEP, "executed": False, "log_note": "T has not started"}, STEP, STEP]},
    "outputs": {"outputs": [{"note": "n", "target": "t", "url": None}, {"note": None, "target": None, "url": "u"}]},
    "a bool for a number": {"attempt": True, "max_attempts": False},
    "a number for text": {"job_status": 3, "steps": [{**STEP, "executed": 1}]},
    "a field more": {"extra": 1},
    "a step's field more": {"steps": [{**STEP, "extra": 1}]},
    "a field less": {"key": None},
}


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_an_answer_written_field_by_field_is_the_envelope_s_bytes(variant: str, ensure_ascii: bool) -> None:
    """:func:`api.status.status_body` writes what :func:`api.envelope.compact_envelope` writes of any status data:
    each kind of value, text to escape, and data of another shape (which it leaves to compact_envelope)."""
    app = Flask(__name__)
    provider = compact_provider(app)
    assert provider is not None
    provider.ensure_ascii = ensure_ascii
    data = dict(sorted({**DATA, **VARIANTS[variant]}.items()))  # in order, as status_data makes it
    if variant == "a field less":
        del data["key"]

    assert status_body(provider, data, 200, "success") == compact_envelope(provider, data, 200, "success", True)
