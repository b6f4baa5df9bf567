"""Event logs: JSON lines carrying the run id, from the formatter up to a real worker executing a run."""

from __future__ import annotations

import contextvars
import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.logs.format import JsonFormatter, RunIdFilter, current_run, formatter
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end, known


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "nectar.test", logging.WARNING, __file__, 1, message, ("x",) if "%s" in message else None, None
    )
    made.__dict__.update(extra)
    RunIdFilter().filter(made)
    return made


def test_a_json_line_has_time_level_logger_message_and_run_id() -> None:
    event = json.loads(JsonFormatter().format(record("run %s failed", run_id="r1", attempt=2)))

    assert event["message"] == "run x failed" and event["level"] == "WARNING" and event["logger"] == "nectar.test"
    assert (event["run_id"], event["attempt"]) == ("r1", 2)
    assert event["ts"].endswith("+00:00")


def test_the_run_id_comes_from_the_context_when_not_given() -> None:
    contextvars.Context().run(
        run_id_from_context
    )  # a fresh context: a test run in this process before may have set one


def run_id_from_context() -> None:
    token = current_run.set("from-context")
    try:
        assert json.loads(JsonFormatter().format(record("inside")))["run_id"] == "from-context"
        assert json.loads(JsonFormatter().format(record("named", run_id="given")))["run_id"] == "given"
    finally:
        current_run.reset(token)
    assert json.loads(JsonFormatter().format(record("outside")))["run_id"] is None


def test_an_exception_is_kept_in_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = logging.LogRecord("n", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    event = json.loads(JsonFormatter().format(made))
    assert "RuntimeError: boom" in event["exception"]


def test_an_unknown_format_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        formatter("xml")
    with pytest.raises(ValueError, match="text or json"):
        Settings(log_format="yaml").resolved()


def test_a_worker_logs_each_run_event_as_json_with_its_run_id(
    settings: Settings, start_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    settings = settings.replace(log_format="json")
    service = closed_at_end(Nectar(settings))
    run = service.submit("testchains", "hello_luigiworld_chain", "WithDependencyTask", {"aparam": "logged"}).run
    assert run is not None
    worker = start_worker(settings, workers=1)
    wait_until(lambda: known(service.runs.get(run.id)).state.value == "DONE", timeout=60)
    worker.terminate()
    worker.wait(timeout=60)

    lines = (tmp_path / "worker-0.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(events) == len([line for line in lines if line.strip()]), "every line is one JSON object"
    about = [e["message"] for e in events if e["run_id"] == run.id]
    assert any("attempt 1 claimed" in m for m in about), about
    assert any("attempt 1 of 1 started" in m for m in about), about
    assert any("attempt 1 ended: DONE" in m for m in about), about
