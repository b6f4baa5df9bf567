"""A status lookup's registry read: a key's latest run and its steps, in one SQL read, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nectar.keys import TargetKey
from nectar.registry import Run, RunState, Step
from nectar.registry.postgres import PostgresRunStore
from nectar.registry.schema import (
    RUN_COLUMNS,
    STATUS_COLUMNS,
    STATUS_STEP_COLUMNS,
    RunStatus,
    StepStatus,
    params_json,
)
from nectar.registry.sql import SqlRunStore
from nectar.registry.sqlite import COLLECT, SQLiteRunStore
from nectar.status import job_status
from nectar.stores.local import LocalStore
from tests.helpers.registries import closed_at_end

KEY = TargetKey("t", "c_chain", "ATask", "0123456789abcdef0123456789abcdef")


@pytest.fixture(params=["sqlite", "postgres"])
def runs(request: pytest.FixtureRequest, tmp_path: Path) -> SqlRunStore:
    if request.param == "postgres":
        return closed_at_end(PostgresRunStore(request.getfixturevalue("database_url")))
    return closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))


def queued(runs: SqlRunStore, queued_at: float) -> Run:
    run = dataclasses.replace(Run.new(KEY.path, "t", "c_chain", "ATask", {"n": "1"}, "ATask_1"), queued_at=queued_at)
    return runs.submit(run)[0]


def as_status(run: Run | None) -> RunStatus | None:
    """``run`` as the status read answers it: the columns a status reads, its parameters as stored."""
    if run is None:
        return None
    return RunStatus._make(
        getattr(run, column) if column != "params" else params_json(run.params) for column in STATUS_COLUMNS
    )


def as_step_status(step: Step) -> StepStatus:
    """``step`` as the status read answers it: the columns a status reads."""
    return StepStatus(step.task, step.key, step.state, step.executed, step.error)


def reads_counted(runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the registry's SQL reads from now on (each :meth:`_read` is one statement)."""
    counted: list[int] = []
    read = runs._read

    def counting(query: Callable[[Any], Any]) -> Any:
        counted.append(1)
        return read(query)

    monkeypatch.setattr(runs, "_read", counting)
    return counted


def test_the_latest_run_and_its_steps_are_what_latest_and_steps_answer(runs: SqlRunStore) -> None:
    assert runs.latest_status(KEY.path) == (None, [])
    first = queued(runs, 1000.0)
    assert runs.latest_status(KEY.path) == (as_status(first), [])  # a run with no step yet: one row, its steps NULL
    runs.cancel(first.id)
    second = queued(runs, 2000.0)
    upstream = Step(second.id, "Up_1", "Up", None, "DONE", executed=False, error=None, updated_at=2001.0)
    said = 'said "no" \\ to\n\tZürich ☃ 𝄞 [1, {"a": null}]'  # as written, whatever the read's columns hold
    own = Step(second.id, "ATask_1", "ATask", KEY.path, "RUNNING", executed=True, error=said, updated_at=2002.0)
    runs.record_steps([own, upstream])  # the requested task first, as luigi discovers them

    found = runs.latest_status(KEY.path)

    assert found == (as_status(runs.latest(KEY.path)), list(map(as_step_status, runs.steps(second.id))))
    assert found[0] is not None and found[0].id == second.id
    assert found[1] == [as_step_status(upstream), as_step_status(own)]  # the requested task last
    assert [type(step.executed) for step in found[1]] == [bool, bool]


def test_a_status_lookup_reads_the_registry_once(
    runs: SqlRunStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued(runs, 1000.0)
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "PENDING", updated_at=1000.0)])
    counted = reads_counted(runs, monkeypatch)

    status = job_status(KEY, store=LocalStore(tmp_path / "targets"), runs=runs)

    assert (status.job_status, [step.task for step in status.steps]) == (RunState.PENDING, ["ATask"])
    assert len(counted) == 1, f"{len(counted)} registry reads for one status lookup"


def test_the_status_read_sorts_nothing_in_sqlite(tmp_path: Path) -> None:
    """SQLite follows an index for each table of the read and builds no temporary B-tree to sort a run's steps
    (one per status lookup, before): the rows are put in order as they are read. The latest run of the key is found
    in ``runs_one_active_per_key`` (its active run), else in the ``runs_by_key`` index (its ended runs, each row's
    rowid beside its key, in the order they were written; the state, which the index's condition already holds,
    read from the row, which the read reads next anyway), then its row by that rowid: not read in a
    subquery that SQLite runs as a co-routine, copying the run's columns out to the query around it. Its steps are
    read from their table's primary key (``WITHOUT ROWID``: their rows in its leaves), not from an index of it then
    the table's rows by rowid."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    query = f"EXPLAIN QUERY PLAN {runs.STATUS_READ}"
    plan = runs._read(lambda db: [row[3] for row in db.execute(query, ("k", "k"))])
    assert not [step for step in plan if "TEMP B-TREE" in step or "CO-ROUTINE" in step], plan
    assert [step for step in plan if step.startswith("SEARCH")] == [
        "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)",
        "SEARCH runs USING INDEX runs_one_active_per_key (key=?)",
        "SEARCH runs USING INDEX runs_by_key (key=?)",
        "SEARCH s USING PRIMARY KEY (run_id=?) LEFT-JOIN",
    ]


@pytest.mark.parametrize("queued_at", [[1000.0], [1000.0, 2000.0], [2000.0, 1000.0]])
def test_the_status_read_answers_the_key_s_latest_run_and_only_its_steps(
    runs: SqlRunStore, queued_at: list[float]
) -> None:
    """The run read is the key's latest (the one written last, whatever its queue time), and the steps are that
    run's only; a key without a run reads none."""
    assert runs.latest_status(KEY.path) == (None, [])
    made = []
    for when in queued_at:
        run = queued(runs, when)
        runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "PENDING", error=f"{when}", updated_at=when)])
        made.append(run)
        runs.cancel(run.id)  # one active run per key: the next one is queued after this one ended
    latest = made[-1]

    found, steps = runs.latest_status(KEY.path)

    assert found is not None and found.id == latest.id
    assert [step.error for step in steps] == [f"{latest.queued_at}"]
    assert runs.latest_status(KEY.with_file("other.txt").path) == (None, [])


def test_the_status_read_fetches_the_run_s_id_once(runs: SqlRunStore) -> None:
    """Each column of the status read is fetched (and named) in every lookup: a step's run id is its run's, read
    once with the run, not again in each step's columns."""
    run = queued(runs, 1000.0)
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "PENDING", updated_at=1000.0)])

    (row,) = runs._read(lambda db: runs._status_rows(db, KEY.path))

    assert list(row).count(run.id) == 1
    assert runs.latest_status(KEY.path)[1] == list(map(as_step_status, runs.steps(run.id)))


def test_a_run_is_read_back_field_for_field_by_every_read(runs: SqlRunStore) -> None:
    """A row's values become a Run's fields by place (:func:`nectar.registry.schema.run_of`): every field, JSON ones
    (parameters, objects, waits) and the state included, comes back as written, whichever read returns it: a time
    to its 17th digit (a read that carried it as text of 15, as SQLite's JSON writes a float, would not), text with
    quotes, escapes and any script."""
    assert tuple(field.name for field in dataclasses.fields(Run)) == RUN_COLUMNS
    written = Run(
        "r1", KEY.path, "t", "c_chain", "ATask", {"n": "1", "day": "2026-01-02"}, "ATask_1", RunState.WAITING,
        queued_at=1.5, started_at=1796480841.7855511, finished_at=None, worker="host:1", failed_step="Üp",
        error='said "no" \\ to\nZürich ☃ 𝄞', attempt=2, max_attempts=3, retry_delay=4.5, retry_backoff=3.0,
        not_before=1796480841.0000002, heartbeat_at=0.1 + 0.2, waiting_since=1e-300, schedule_id="s1",
        fire_time=2.0**53 + 2, trigger_id="t1", objects=("s3://b/a", '/c/"d"\n'), waiting_for=("run:r0",),
        wait_until=-9.5e-7, on_wait_timeout="skip",
    )  # fmt: skip
    runs.import_runs([written])

    status = runs.latest_status(KEY.path)[0]
    assert status is not None
    assert status == as_status(written) and type(status.state) is RunState and status.objects == written.objects
    assert (status.params, status.retry_at) == (written.params, written.retry_at)
    assert runs.get(written.id) == runs.latest(KEY.path) == written
    assert runs.waiting(now=written.not_before + 1) == [written]
    read = runs.get(written.id)
    assert read is not None
    assert vars(read) == vars(written) and type(read.state) is RunState and hash(read.objects) == hash(written.objects)
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.error = "changed"  # type: ignore[misc]


#: a run's columns that no status answer reads, left out of the status read
NOT_ANSWERED = {"key", "chain_type", "chain", "task", "queued_at", "finished_at", "retry_delay", "retry_backoff"}
#: the same of a step's
STEP_NOT_ANSWERED = {"run_id", "task_id", "updated_at"}


def test_the_status_read_fetches_only_what_a_status_answers(runs: SqlRunStore) -> None:
    """Each column the status read names is fetched (SQLite: a call of its own, inside its connection's mutex) in every
    lookup: the run's and its steps' columns no answer reads are not among them (the answer's run fields, its job
    status, a lost attempt's reason and the retry's time are read from those that are)."""
    run = queued(runs, 1000.0)
    runs.record_steps([Step(run.id, "ATask_1", "ATask", KEY.path, "PENDING", updated_at=1000.0)])

    (row,) = runs._read(lambda db: runs._status_rows(db, KEY.path))

    assert not NOT_ANSWERED & set(STATUS_COLUMNS) and "on_wait_timeout" not in STATUS_COLUMNS
    assert not STEP_NOT_ANSWERED & set(STATUS_STEP_COLUMNS)
    assert len(row) == len(STATUS_COLUMNS) + len(STATUS_STEP_COLUMNS) + 1  # the run's, its step's and the step's seq


def test_a_status_lookup_leaves_the_run_s_parameters_as_stored(runs: SqlRunStore, tmp_path: Path) -> None:
    """A status answers a task whose output is its out.txt without its run's parameters: they are parsed only when
    asked (the outputs of a task with an ``output()`` of its own), not in each lookup."""
    run = queued(runs, 1000.0)
    with runs._db() as db:  # parameters no JSON parser reads: a lookup that parsed them would raise
        runs._exec(db, "UPDATE runs SET params = ? WHERE id = ?", ("{not json", run.id))

    status = job_status(KEY, store=LocalStore(tmp_path / "targets"), runs=runs)

    assert status.run is not None and (status.job_status, status.run.id) == (RunState.PENDING, run.id)
    with pytest.raises(json.JSONDecodeError):
        status.run.params  # noqa: B018


def test_a_status_read_in_sqlite_keeps_its_own_rows_while_another_thread_reads(tmp_path: Path) -> None:
    """SQLite hands the status read's rows to a function of the connection (:data:`COLLECT`), which keeps them for
    the thread whose statement steps: a read held mid-statement (at SQLite's progress handler, before its row) while
    another thread reads another key answers its own run, and the other thread its own."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    other = KEY.with_file("other.txt")
    mine = queued(runs, 1000.0)
    theirs = runs.submit(Run.new(other.path, "t", "c_chain", "ATask", {"n": "2"}, "ATask_2"))[0]
    inside, read = threading.Event(), threading.Event()

    def held(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
        def gate() -> int:
            if not inside.is_set():
                inside.set()
                assert read.wait(60), "the other thread's read did not end"
            return 0

        db.set_progress_handler(gate, 1)
        try:
            return runs._status_rows(db, KEY.path)
        finally:
            db.set_progress_handler(None, 1)

    found: list[list[tuple[Any, ...]]] = []
    reader = threading.Thread(target=lambda: found.append(runs._read(held)))
    reader.start()
    try:
        assert inside.wait(60), "the held read did not start"
        other_run, _ = runs.latest_status(other.path)
    finally:
        read.set()
        reader.join(60)

    assert other_run is not None and other_run.id == theirs.id
    assert [row[0] for row in found[0]] == [mine.id]


def test_sqlite_s_collecting_function_keeps_no_row_for_another_statement(tmp_path: Path) -> None:
    """Outside a status read, a statement that calls the status read's function (:data:`COLLECT`) fails, and leaves
    nothing a later read would answer."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run = queued(runs, 1000.0)
    runs.latest_status(KEY.path)

    with pytest.raises(sqlite3.OperationalError):
        runs._read(lambda db: db.execute(f"SELECT {COLLECT}('stray')").fetchone())

    assert runs._read(lambda db: runs._status_rows(db, KEY.path))[0][0] == run.id
    assert runs.latest_status(KEY.with_file("other.txt").path) == (None, [])
