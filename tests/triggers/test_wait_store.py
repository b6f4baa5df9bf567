"""The registry's WAITING runs on SQLite and PostgreSQL: put to wait by their attempt, found when due, woken, ended."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState, RunStore, Step, open_run_store
from nectar.registry.schema import values
from nectar.registry.sql import SqlRunStore
from tests.helpers.registries import closed_at_end, known

DIGEST = "0123456789abcdef0123456789abcdef"
ACK = "s3://landing/sales/2026-06-01.ack"


@pytest.fixture(params=["sqlite", "postgres"])
def runs(request: pytest.FixtureRequest, settings: Settings) -> RunStore:
    if request.param == "postgres":
        settings = settings.replace(database_url=request.getfixturevalue("database_url"))
    return closed_at_end(open_run_store(settings))


def new_run(n: int = 0) -> Run:
    return Run.new(f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {}, f"ATask_{n}")


def waiting_run(runs: RunStore, n: int = 0, next_check: float = 0.0, until: float | None = None) -> Run:
    """A run whose first attempt found ``ACK`` missing and put it to wait."""
    runs.submit(new_run(n))
    run = runs.claim("w:1")
    assert run is not None
    deadline = time.time() + 3600 if until is None else until
    assert runs.wait(run.id, run.attempt, [ACK], deadline, next_check, f"waiting for {ACK}")
    return run


def sql(runs: RunStore, text: str, args: tuple[Any, ...] = ()) -> None:
    assert isinstance(runs, SqlRunStore)
    with runs._db() as db:
        runs._exec(db, text, args)


def rows(runs: SqlRunStore, text: str) -> list[Any]:
    return list(runs._read(lambda db: runs._exec(db, text).fetchall()))


def test_a_waiting_attempt_is_not_counted_and_holds_no_worker(runs: RunStore) -> None:
    before = time.time()
    run = waiting_run(runs, next_check=before + 1, until=before + 60)

    now = runs.get(run.id)
    assert now is not None and now.state == RunState.WAITING
    assert (now.attempt, now.heartbeat_at, now.error) == (0, None, f"waiting for {ACK}")
    assert (now.waiting_for, now.wait_until, now.not_before) == ((ACK,), before + 60, before + 1)
    assert now.waiting_since is not None and now.waiting_since >= before
    assert runs.claim("w:2") is None, "a WAITING run was claimed"
    assert runs.submit(new_run())[0].id == run.id, "a second identical submission made a second active run"
    assert runs.count_by_state()[RunState.WAITING] == 1
    assert not runs.wait(run.id, run.attempt, [ACK], before + 60, before + 1, "again"), "a stale attempt waited"


def test_the_due_waiting_runs_are_found_longest_due_first(runs: RunStore) -> None:
    later = waiting_run(runs, 0, next_check=200.0)
    first = waiting_run(runs, 1, next_check=100.0)
    waiting_run(runs, 2, next_check=300.0)

    assert [run.id for run in runs.waiting(250.0)] == [first.id, later.id]
    assert [run.id for run in runs.waiting(250.0, limit=1)] == [first.id]
    assert runs.waiting(50.0) == []


def test_a_run_checked_later_is_due_then(runs: RunStore) -> None:
    run = waiting_run(runs, next_check=100.0)

    assert runs.check_later(run.id, 400.0)
    assert runs.waiting(300.0) == [] and [r.id for r in runs.waiting(400.0)] == [run.id]
    assert runs.check_later(run.id, 500.0, "waiting for it, 2 checks so far")
    now = runs.get(run.id)
    assert now is not None and (now.not_before, now.error) == (500.0, "waiting for it, 2 checks so far")


def test_a_woken_run_is_claimed_and_waits_again_within_its_first_deadline(runs: RunStore) -> None:
    deadline = time.time() + 60
    run = waiting_run(runs, next_check=time.time() + 3600, until=deadline)
    runs.record_steps([Step(run.id, "AckTask_1", "AckTask", None, "PENDING", error=f"waiting for {ACK}")])

    assert runs.wake(run.id)
    assert [(step.state, step.error) for step in runs.steps(run.id)] == [("PENDING", None)]
    assert not runs.wake(run.id) and not runs.check_later(run.id, 0.0), "a run no longer WAITING was changed"
    woken = runs.get(run.id)
    assert woken is not None and woken.state == RunState.PENDING
    assert (woken.waiting_for, woken.waiting_since, woken.error) == (None, None, None)
    again = runs.claim("w:2")
    assert again is not None and (again.id, again.attempt) == (run.id, 1)
    assert runs.wait(again.id, again.attempt, [ACK], deadline + 3600, 0.0, "waiting again")
    assert known(runs.get(run.id)).wait_until == deadline


def test_a_wait_that_fails_ends_its_steps_naming_the_step_that_waited(runs: RunStore) -> None:
    run = waiting_run(runs)
    runs.record_steps(
        [
            Step(run.id, "AckTask_1", "AckTask", None, "PENDING", error=f"waiting for {ACK}"),
            Step(run.id, "ATask_0", "ATask", None, "PENDING"),
        ]
    )

    assert runs.end_wait(run.id, f"waited 1h0m for {ACK}", now=1234.0) == RunState.FAILED
    assert runs.end_wait(run.id, "again") is None
    ended = runs.get(run.id)
    assert ended is not None and ended.state == RunState.FAILED
    assert (ended.error, ended.failed_step, ended.finished_at) == (f"waited 1h0m for {ACK}", "AckTask", 1234.0)
    assert {step.task: step.state for step in runs.steps(run.id)} == {"AckTask": "CANCELLED", "ATask": "CANCELLED"}
    assert runs.submit(new_run())[1], "the key still had an active run"


def test_a_skipped_wait_records_what_made_the_run_as_skipped(runs: RunStore) -> None:
    run = waiting_run(runs)
    other = waiting_run(runs, 1)
    for made in (run, other):
        sql(
            runs,
            "INSERT INTO fires (schedule_id, fire_time, state, run_id, reason, version, recorded_at) "
            "VALUES (?, ?, 'queued', ?, NULL, 1, 0)",
            ("daily", float(made is other), made.id),
        )
        sql(
            runs,
            "INSERT INTO trigger_objects (trigger_id, object_key, version, state, run_id, recorded_at) "
            "VALUES ('landing', ?, 'etag', 'queued', ?, 0)",
            (made.id, made.id),
        )

    assert runs.end_wait(run.id, f"waited 2s for {ACK}", skip=True) == RunState.CANCELLED
    ended = runs.get(run.id)
    assert ended is not None and (ended.state, ended.error, ended.failed_step) == (
        RunState.CANCELLED,
        f"waited 2s for {ACK}",
        None,
    )
    assert isinstance(runs, SqlRunStore)
    for table in ("fires", "trigger_objects"):
        found = {values(row) for row in rows(runs, f"SELECT run_id, state, reason FROM {table}")}
        assert found == {(run.id, "skipped", f"waited 2s for {ACK}"), (other.id, "queued", None)}, table


def test_a_cancelled_waiting_run_ends_cancelled(runs: RunStore) -> None:
    run = waiting_run(runs)

    before, after = runs.cancel(run.id)
    assert (before.state, after.state) == (RunState.WAITING, RunState.CANCELLED)
    assert runs.end_wait(run.id, "too late") is None and not runs.wake(run.id)
