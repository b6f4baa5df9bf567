"""The run page reads its run whole, then the key's status (its steps): a run that moves on between the two reads is
shown as the status found it, its state and its steps of one moment."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from nectar.keys import TargetKey
from nectar.registry import Step
from nectar.service import Nectar
from nectar.status import JobStatus
from tests.ui.test_pages import Elements, html, queue


def test_a_run_that_ends_between_the_page_s_reads_is_shown_ended_with_its_steps_and_output(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = queue(client, "TestS3Task")
    service = app.extensions["nectar"]
    run = service.runs.claim("test:1", run_id)
    key = TargetKey.parse(run.key)
    service.store.write_text(key, "hello\n")
    service.runs.record_steps([Step(run_id, run.task_id, run.task, key.path, "RUNNING", True)], attempt=run.attempt)
    status = Nectar.status

    def ends_first(self: Nectar, asked: TargetKey, store: object = None) -> JobStatus:
        """The run's attempt ends after the page read its run, before it reads the status (a gate on the race)."""
        step = Step(run_id, run.task_id, run.task, key.path, "DONE", True)
        assert self.runs.complete(run_id, run.attempt, [step])
        return status(self, asked)

    monkeypatch.setattr(Nectar, "status", ends_first)
    page = html(client, f"/ui/runs/{run_id}")
    found = Elements(page).by_id
    assert found["run"][1]["data-active"] == "false" and "cancel" not in found
    assert "output-link" in found and "RUNNING" not in page and "DONE" in page
