"""How runs end in the registry, on SQLite and on a real PostgreSQL: a failure no retry cures, and a cancel
that ends its steps with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nectar.registry import RetryPolicy, Run, RunState, RunStore, Step
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end

DIGEST = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def runs(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    if request.param == "sqlite":
        return closed_at_end(SQLiteRunStore(tmp_path / "registry.sqlite"))
    from nectar.registry.postgres import PostgresRunStore

    return closed_at_end(PostgresRunStore(request.getfixturevalue("database_url")))


def claimed(runs: RunStore, retries: int = 2) -> Run:
    run = Run.new(
        f"chains/t/c_chain/ATask/{DIGEST}/out.txt", "t", "c_chain", "ATask", {}, "ATask_1", RetryPolicy(retries)
    )
    runs.submit(run)
    got = runs.claim("host:1", run_id=run.id)
    assert got is not None
    return got


def step(run: Run, task: str, state: str) -> Step:
    return Step(run.id, f"{task}_1", task, None, state)


def test_a_failure_that_is_not_retryable_ends_the_run_at_once(runs: RunStore) -> None:
    run = claimed(runs, retries=2)

    assert runs.fail(run.id, run.attempt, "ATask", "NoSuchBucket", retryable=False) == RunState.FAILED

    ended = runs.get(run.id)
    assert ended is not None and (ended.state, ended.attempt, ended.error) == (RunState.FAILED, 1, "NoSuchBucket")
    other = claimed(runs, retries=2)
    assert runs.fail(other.id, other.attempt, "ATask", "flaky") == RunState.PENDING  # the default still retries


def test_a_cancel_ends_the_steps_not_yet_over_and_they_stay_so(runs: RunStore) -> None:
    run = claimed(runs)
    runs.record_steps(
        [step(run, "FirstTask", "DONE"), step(run, "SecondTask", "RUNNING"), step(run, "ATask", "PENDING")]
    )

    runs.cancel(run.id)

    states = {s.task: s.state for s in runs.steps(run.id)}
    assert states == {"FirstTask": "DONE", "SecondTask": "CANCELLED", "ATask": "CANCELLED"}
    # the interrupted worker's last words arrive after the cancel: they change nothing
    runs.record_steps([step(run, "SecondTask", "FAILED"), step(run, "LateTask", "RUNNING")])
    assert {s.task: s.state for s in runs.steps(run.id)} == states
