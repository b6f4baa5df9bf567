"""When a run's steps reach the registry: a failure and the first start at once, a later start with what follows it
(one write for a short step), or by the recorder's own thread once it has waited ``FLUSH_INTERVAL``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import luigi
import pytest

from harness import waitfor
from nectar import steps
from nectar.registry import Step
from nectar.registry.sqlite import SQLiteRunStore
from nectar.steps import StepRecorder


class CountedRuns(SQLiteRunStore):
    """The real registry, keeping each write of steps as the states it wrote."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[list[tuple[str, str]]] = []

    def record_steps(self, steps: Sequence[Step]) -> None:
        super().record_steps(steps)
        self.writes.append([(step.task, step.state) for step in steps])


class FirstStep(luigi.Task):
    pass


class SecondStep(luigi.Task):
    pass


class ThirdStep(luigi.Task):
    pass


def states(runs: CountedRuns) -> dict[str, str]:
    return {step.task: step.state for step in runs.steps("run-1")}


def test_the_first_start_is_written_at_once_and_a_short_later_step_in_one_write_with_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "FLUSH_INTERVAL", 3600.0)  # no start waits long enough to be written by itself here
    runs = CountedRuns(tmp_path / "runs.db")
    recorder = StepRecorder(runs, "run-1")

    recorder.record(FirstStep(), "RUNNING")
    assert runs.writes == [[("FirstStep", "RUNNING")]]  # the run shows what it runs as soon as it does
    recorder.record(FirstStep(), "DONE")
    recorder.record(SecondStep(), "RUNNING")
    recorder.record(SecondStep(), "DONE")
    recorder.record(ThirdStep(), "FAILED", "boom")  # a failure: at once, with what waited

    assert runs.writes[1:] == [
        [("FirstStep", "DONE"), ("SecondStep", "RUNNING"), ("SecondStep", "DONE"), ("ThirdStep", "FAILED")]
    ]
    assert states(runs) == {"FirstStep": "DONE", "SecondStep": "DONE", "ThirdStep": "FAILED"}
    recorder.close()


def test_a_later_start_left_waiting_is_written_by_the_recorders_thread_while_its_step_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "FLUSH_INTERVAL", 0.05)
    runs = CountedRuns(tmp_path / "runs.db")
    recorder = StepRecorder(runs, "run-1")
    recorder.record(FirstStep(), "RUNNING")
    recorder._flushed = float("inf")  # the main thread writes nothing more by itself: the step runs on and on
    recorder.record(FirstStep(), "DONE")
    recorder.record(SecondStep(), "RUNNING")

    waitfor(lambda: states(runs).get("SecondStep") == "RUNNING", 30, "the waiting start written while its step runs")
    assert states(runs)["FirstStep"] == "DONE"
    recorder.record(SecondStep(), "DONE")
    recorder.close()
    assert states(runs) == {"FirstStep": "DONE", "SecondStep": "DONE"}
    assert recorder._writer is not None
    recorder._writer.join(30)
    assert not recorder._writer.is_alive(), "the recorder's thread outlived its close"
