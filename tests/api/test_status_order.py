"""A status answer's fields are put in the order the answer writes them (its keys sorted), for every shape of it: the
JSON encoder's sort of each object then finds it in order, and the bytes are those of a sorted dump all the same."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.context import facade
from api.status import status_data
from benchmarks.population import TASK, Probe, fill_store, finished_run
from nectar import signing
from nectar.config import Settings
from nectar.keys import STDERR_FILE, STDOUT_FILE
from nectar.registry import RunState, Step
from nectar.registry.sqlite import SQLiteRunStore
from tests.clock import Clock

NOW = time.time()
#: each shape of an answer: the run's state and what it carries (n: its probe; its output is stored for DONE only)
SHAPES: dict[str, dict[str, Any]] = {
    "done with its download URL": {"state": RunState.DONE},
    "running": {"state": RunState.RUNNING, "heartbeat_at": NOW, "worker": "w:1"},
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


@pytest.mark.parametrize("shape", SHAPES)
def test_an_answer_s_fields_are_put_in_the_order_it_writes_them(
    app: Flask, client: FlaskClient, settings: Settings, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Clock(NOW).install(monkeypatch, signing)  # the answers compared sign in the same second
    fields = SHAPES[shape]
    probe = Probe(list(SHAPES).index(shape))
    run = dataclasses.replace(finished_run(probe, NOW), **fields)
    step_state = fields["state"].value if fields["state"] != RunState.WAITING else RunState.PENDING.value
    step = Step(run.id, run.task_id, TASK, run.key, step_state, executed=step_state != "PENDING", updated_at=NOW)
    SQLiteRunStore(settings.registry_path).import_runs([run], [step])
    if fields["state"] == RunState.DONE:
        fill_store(settings.local_targets_dir, range(probe.n, probe.n + 1))
    for name in (STDOUT_FILE, STDERR_FILE):  # its stored logs: every link handed out answers
        log = settings.local_targets_dir / probe.key.with_file(name).path
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("probe ran\n")
    path = f"/api/chainstatus?chain={probe.key.path}"

    body = client.get(path).get_data(as_text=True)
    with app.test_request_context(path):
        data = status_data(facade(), probe.key)

    answer = json.loads(body)
    assert answer["data"]["job_status"] == fields["state"].value
    assert in_order(data)
    assert body == json.dumps(answer, sort_keys=True, separators=(",", ":")) + "\n"
    assert answer["data"] == json.loads(json.dumps(data))
