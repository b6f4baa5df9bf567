"""A step's start reaches the registry before the step runs: an attempt killed at any moment is blamed, in the
registry and in luigid, on the step that was running, never on the one before it."""

from __future__ import annotations

from pathlib import Path

import luigi
import pytest

from nectar import steps
from nectar.leases import release
from nectar.registry.sqlite import SQLiteRunStore
from nectar.steps import StepRecorder
from tests.nectar.test_runs import new_run


class StepA(luigi.Task):
    pass


class StepB(luigi.Task):
    pass


def test_an_attempt_killed_as_its_second_step_starts_blames_that_step_not_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chain A -> B: A ran and ended, B started, then kill -9 (nothing more is written). The worker's release marks
    the steps the registry shows RUNNING as killed: B, the one that was running. (Batching a later start with what
    followed it, within FLUSH_INTERVAL, left A shown RUNNING: A was blamed and told FAILED to luigid, B never shown.)"""
    monkeypatch.setattr(steps, "FLUSH_INTERVAL", 3600.0)  # what may wait, waits for as long as the test runs
    runs = SQLiteRunStore(tmp_path / "runs.sqlite3")
    run, _ = runs.submit(new_run())
    recorder = StepRecorder(runs, run.id)
    recorder.record(StepA(), "RUNNING")
    recorder.record(StepA(), "DONE")
    recorder.record(StepB(), "RUNNING")

    assert {step.task: step.state for step in runs.steps(run.id)} == {"StepA": "DONE", "StepB": "RUNNING"}
    release(runs, run, "worker process killed by signal 9 during attempt 1", None)
    blamed = {step.task: (step.state, step.error) for step in runs.steps(run.id)}
    assert blamed["StepA"] == ("DONE", None), blamed
    assert blamed["StepB"][0] == "FAILED" and "signal 9" in str(blamed["StepB"][1]), blamed
