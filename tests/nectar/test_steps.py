"""A step's start reaches the registry before the step runs: an attempt killed at any moment is blamed, in the
registry and in luigid, on the step that was running, never on the one before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import luigi
import pytest

from harness.lifeline import lifeline_env
from nectar import spares, steps
from nectar.build import luigi_worker_id
from nectar.leases import release
from nectar.luigid import SchedulerClient
from nectar.registry import Step
from nectar.registry.sqlite import SQLiteRunStore
from nectar.steps import StepRecorder
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_runs import new_run


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
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    runs.submit(new_run())
    run = runs.claim("w1")  # released as its attempt's claim made it
    assert run is not None
    recorder = StepRecorder(runs, run.id)
    recorder.record(StepA(), "RUNNING")
    recorder.record(StepA(), "DONE")
    recorder.record(StepB(), "RUNNING")

    assert {step.task: step.state for step in runs.steps(run.id)} == {"StepA": "DONE", "StepB": "RUNNING"}
    release(runs, run, "worker process killed by signal 9 during attempt 1", None)
    blamed = {step.task: (step.state, step.error) for step in runs.steps(run.id)}
    assert blamed["StepA"] == ("DONE", None), blamed
    assert blamed["StepB"][0] == "FAILED" and "signal 9" in str(blamed["StepB"][1]), blamed


class StepOf(luigi.Task):
    """A step of its own test's name in the session's luigid."""

    test = luigi.Parameter()


@pytest.mark.parametrize("held", ["PENDING", "RUNNING"])
def test_an_attempt_released_after_a_later_claim_fails_in_luigid_only_the_task_it_still_holds_there(
    tmp_path: Path, luigid: str, held: str
) -> None:
    """Attempt 1 is requeued (its worker stopped) and the run claimed again (attempt 1 again: a requeue gives the
    number back) before attempt 1 is released: the step it left RUNNING is attempt 2's to tell in the registry, and
    in luigid unless luigid still has it RUNNING in attempt 1's worker's name (failed then, for attempt 2's worker to
    be given it). (luigid was told it FAILED in attempt 1's name either way: a task of attempt 2 that luigid had not
    yet handed to a worker was failed under it.)"""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    runs.submit(new_run())
    first = runs.claim("w1")
    assert first is not None
    step = StepOf(test=f"{tmp_path}-{held}")
    StepRecorder(runs, first.id, first.attempt).record(step, "RUNNING")
    assert runs.requeue(first.id, first.attempt)
    second = runs.claim("w2")
    assert second is not None and second.attempt == first.attempt and second.started_at != first.started_at
    scheduler = SchedulerClient(luigid, 5.0)  # attempt 1's worker was given the step, or attempt 2's build added it
    holder = luigi_worker_id("w1" if held == "RUNNING" else "w2")
    scheduler.call("add_task", task_id=step.task_id, family="StepOf", worker=holder, status=held)
    assert (scheduler.task(step.task_id) or {}).get("status") == held

    release(runs, first, "interrupted: the worker stopped; the run was requeued", scheduler)
    assert [(s.task, s.state) for s in runs.steps(first.id)] == [("StepOf", "RUNNING")]
    told = scheduler.task(step.task_id)
    assert told is not None and told["status"] == {"PENDING": "PENDING", "RUNNING": "FAILED"}[held], told
    runs.close()


class StepC(luigi.Task):
    pass


def test_a_step_noted_again_before_it_is_written_is_one_row_and_the_registry_keeps_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step discovered PENDING and then started is one row of the write that tells it RUNNING, not two (one
    statement less between a step's start and its run()); what the registry keeps is what a row per change keeps:
    each step's last state and error, whether it ever ran, and the order in which the steps were first met."""
    monkeypatch.setattr(steps, "FLUSH_INTERVAL", 3600.0)  # only a start or a failure writes
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    written: list[list[tuple[str, str, bool]]] = []
    record_steps = runs.record_steps

    def counted(changes: list[Step], attempt: int | None = None) -> bool:
        written.append([(step.task, step.state, step.executed) for step in changes])
        return record_steps(changes, attempt)

    monkeypatch.setattr(runs, "record_steps", counted)
    run, _ = runs.submit(new_run())
    recorder = StepRecorder(runs, run.id)
    recorder.record(StepA(), "PENDING")
    recorder.record(StepB(), "PENDING", "waiting for /data/b")
    recorder.record(StepC(), "PENDING")
    recorder.start(StepB())
    recorder.record(StepB(), "DONE")
    recorder.record(StepA(), "RUNNING")
    recorder.record(StepA(), "DONE")
    runs.record_steps(recorder.take())

    assert written == [  # a change in another's place says whether its step ran as of itself (B's start: it ran)
        [("StepA", "PENDING", False), ("StepB", "RUNNING", True), ("StepC", "PENDING", False)],
        [("StepB", "DONE", True), ("StepA", "RUNNING", False)],
        [("StepA", "DONE", False)],
    ]
    one_by_one, _ = runs.submit(new_run(1))
    for task, state, error in [
        (StepA(), "PENDING", None),
        (StepB(), "PENDING", "waiting for /data/b"),
        (StepC(), "PENDING", None),
        (StepB(), "RUNNING", None),
        (StepB(), "DONE", None),
        (StepA(), "RUNNING", None),
        (StepA(), "DONE", None),
    ]:
        executed = type(task) is StepB and state != "PENDING"  # started through the recorder: it ran
        record_steps([Step(one_by_one.id, task.task_id, type(task).__name__, None, state, executed, error)])

    def kept(run_id: str) -> list[tuple[str, str, bool, str | None]]:
        return [(step.task, step.state, step.executed, step.error) for step in runs.steps(run_id)]

    last_met_first = [("StepC", "PENDING", False, None), ("StepB", "DONE", True, None), ("StepA", "DONE", False, None)]
    assert kept(run.id) == kept(one_by_one.id) == last_met_first


#: a worker's attempt, in a process of its own: a step started by luigi's worker after the worker's setup
#: (:meth:`Executor.warm`), in a spare told its run (its socket to the worker: ``spares._told``). Its registry says,
#: as it writes the step RUNNING, whether the worker had been told (the byte waits, unread, on the worker's end);
#: then what was said in the end, and the order of luigi's START handlers in this process.
STARTED_PROBE = """
import socket, sys
from pathlib import Path
import luigi
from nectar import spares
from nectar.config import Settings
from nectar.executor import Executor
from nectar.registry.sqlite import SQLiteRunStore
from nectar.steps import StepRecorder
from tests.helpers.suitenectarB_runs import new_run

class Told(SQLiteRunStore):
    told_first: list[bool] = []

    def record_steps(self, changes, attempt=None):
        if any(step.state == "RUNNING" for step in changes):
            try:
                self.told_first.append(ours.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == spares.STARTED)
            except BlockingIOError:
                self.told_first.append(False)
        return super().record_steps(changes, attempt)

class FirstStep(luigi.Task):
    def run(self):
        pass

data = Path(sys.argv[1])
Executor(Settings(data_dir=data)).warm()
ours, spares._told = socket.socketpair()
runs = Told(data / "runs.sqlite3")
run, _ = runs.submit(new_run())
StepRecorder(runs, run.id).install()
luigi.build([FirstStep()], local_scheduler=True, workers=1)
said = ours.recv(1, socket.MSG_DONTWAIT)
handlers = luigi.Task._event_callbacks[luigi.Task][luigi.Event.START]
print(Told.told_first, said, [getattr(h, "__qualname__", h) for h in handlers])
"""


@pytest.mark.parametrize("hash_seed", ["0", "1", "2"])
def test_a_step_is_written_running_before_its_worker_is_told_it_started_in_every_process(
    tmp_path: Path, hash_seed: str
) -> None:
    """luigi keeps a class's handlers of an event in a set: nectar's three of START (the step recorded, the worker
    told, the run wrapped) ran in the order of their hashes, one that differs from process to process, and told the
    worker (in these processes: first) before the step was written RUNNING. Now one handler does the three, the step
    written first, whatever order luigi's set has (tried under three hash seeds: what a process allocates varies)."""
    env = {**os.environ, **lifeline_env(), "PYTHONHASHSEED": hash_seed}
    probe = subprocess.run(
        [sys.executable, "-c", STARTED_PROBE, str(tmp_path)], capture_output=True, text=True, env=env, check=False
    )
    assert probe.returncode == 0, probe.stderr
    told_first, said, handlers = probe.stdout.strip().splitlines()[-1].split(" ", 2)
    assert told_first == "[False]", f"the worker was told before the step was written RUNNING (START: {handlers})"
    assert said == repr(spares.STARTED), "the worker was never told"
