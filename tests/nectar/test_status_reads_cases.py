"""A status lookup's read (``RunStore.latest_status``) answers what ``latest`` and ``steps`` answer, on SQLite and
PostgreSQL, for the runs a registry holds beyond the plain one: many steps, a retried run, a cancelled run with steps,
parameters in any script."""

from __future__ import annotations

import dataclasses
import random

from nectar.registry import Run, RunState, Step
from nectar.registry.sql import SqlRunStore
from tests.nectar.test_status_reads import KEY, as_status, as_step_status, runs

__all__ = ["runs"]  # the fixture: SQLite and PostgreSQL


def submitted(runs: SqlRunStore, params: dict[str, str], max_attempts: int = 1) -> Run:
    run = Run.new(KEY.path, "t", "c_chain", "ATask", params, "ATask_1")
    return runs.submit(dataclasses.replace(run, max_attempts=max_attempts))[0]


def assert_read_as_latest_and_steps(runs: SqlRunStore) -> None:
    latest = runs.latest(KEY.path)
    assert latest is not None
    run, steps = runs.latest_status(KEY.path)
    assert run == as_status(latest) and run is not None
    assert (run.params, run.retry_at) == (latest.params, latest.retry_at)
    assert steps == list(map(as_step_status, runs.steps(latest.id)))


def test_a_run_of_many_steps_is_read_with_all_of_them_in_the_order_steps_answers(runs: SqlRunStore) -> None:
    run = submitted(runs, {"n": "1"})
    tasks = [f"Step{i}" for i in range(300)]
    random.Random(21).shuffle(tasks)
    runs.record_steps([Step(run.id, f"{t}_1", t, None, "DONE", updated_at=float(i)) for i, t in enumerate(tasks)])
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "RUNNING", executed=True, updated_at=400.0)])

    assert_read_as_latest_and_steps(runs)
    assert [step.task for step in runs.latest_status(KEY.path)[1]][-1] == tasks[0]  # the first recorded


def test_a_retried_run_is_read_with_its_attempt_and_its_retry_and_the_steps_its_attempts_left(
    runs: SqlRunStore,
) -> None:
    run = submitted(runs, {"n": "1"}, max_attempts=3)
    first = runs.claim("host:1", run.id)
    assert first is not None and first.attempt == 1
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "FAILED", True, "boom", 1.0)], attempt=1)
    assert runs.fail(run.id, 1, "ATask", "boom") == RunState.PENDING
    assert_read_as_latest_and_steps(runs)
    status = runs.latest_status(KEY.path)[0]
    assert status is not None and (status.attempt, status.failed_step, status.error) == (1, "ATask", "boom")
    assert status.retry_at is not None and len(runs.attempts(run.id)) == 1

    second = runs.claim("host:2", run.id)
    assert second is not None and second.attempt == 2
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "RUNNING", True, None, 2.0)], attempt=2)
    assert_read_as_latest_and_steps(runs)
    status = runs.latest_status(KEY.path)[0]
    assert status is not None and (status.state, status.attempt, status.worker) == (RunState.RUNNING, 2, "host:2")
    assert status.retry_at is None


def test_a_cancelled_run_is_read_with_the_steps_it_had(runs: SqlRunStore) -> None:
    run = submitted(runs, {"n": "1"})
    assert runs.claim("host:1", run.id) is not None
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "RUNNING", True, None, 1.0)], attempt=1)
    runs.cancel(run.id)

    assert_read_as_latest_and_steps(runs)
    status = runs.latest_status(KEY.path)[0]
    assert status is not None and status.state == RunState.CANCELLED


def test_parameters_in_any_script_are_read_back_as_written(runs: SqlRunStore) -> None:
    params = {"city": "Zürich", "snow": "☃", "clef": "𝄞", "rtl": "שלום", "quote": '"\\\n', "": ""}
    submitted(runs, params)

    assert_read_as_latest_and_steps(runs)
    status = runs.latest_status(KEY.path)[0]
    assert status is not None and status.params == params
