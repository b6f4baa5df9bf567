"""Submissions a process's threads make while another process writes are written together, in one transaction, when
the turn comes (nectar.registry.combine): each thread gets its own answer, the queue's bound holds run by run, and
a turn that never comes fails every thread that awaited it, after which submissions go on."""

from __future__ import annotations

import dataclasses
import itertools
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from nectar.errors import QueueFull
from nectar.registry import Run, RunState, schema, sql, sqlite
from nectar.registry.schema import RUN_COLUMNS, run_row
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_runs import new_run
from tests.nectar.test_sqlite_writers import inside_a_transaction

#: threads submitting at once through one registry, as an API worker's do
THREADS = 8


@pytest.fixture
def runs(tmp_path: Path) -> SQLiteRunStore:
    return closed_at_end(SQLiteRunStore(tmp_path / "registry.db"))


@pytest.fixture
def hold(runs: SQLiteRunStore) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Starts another process inside a write transaction of the registry (it has the turn until killed)."""
    started: list[subprocess.Popen[str]] = []

    def holder() -> subprocess.Popen[str]:
        proc = inside_a_transaction(runs.path)
        started.append(proc)
        return proc

    yield holder
    for proc in started:
        proc.kill()
        proc.wait()


def transactions(runs: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The write transactions ``runs`` opens from now on, counted in the list returned (one entry each): those of its
    turns of several submissions too, which begin theirs in the turn they hold (not through ``_db``)."""
    opened: list[int] = []
    begin: Callable[[], Iterator[sqlite3.Connection]] = runs._transaction

    def counted() -> Iterator[sqlite3.Connection]:
        opened.append(1)
        return begin()

    monkeypatch.setattr(runs, "_transaction", counted)
    return opened


def asked_while_held(
    runs: SQLiteRunStore, holder: subprocess.Popen[str], asked: Sequence[tuple[Run, int | None]]
) -> list[Future[tuple[Run, bool]]]:
    """``asked`` submitted from threads of their own while ``holder`` has the turn, all of them waiting for it, then
    the holder killed: the answers (or errors) of each."""
    pool = ThreadPoolExecutor(len(asked))
    try:
        futures = [pool.submit(runs.submit, run, bound) for run, bound in asked]
        wait_until(lambda: runs._combiner().waiting == len(asked), timeout=60)  # all asked, none written
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        for future in futures:
            future.exception(timeout=60)
    finally:
        pool.shutdown()
    return futures


def test_submissions_asked_while_another_process_writes_are_written_in_one_transaction(
    runs: SQLiteRunStore, hold: Callable[[], subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = transactions(runs, monkeypatch)
    made = [new_run(n) for n in range(THREADS)]
    futures = asked_while_held(runs, hold(), [(run, 100) for run in made])
    assert [future.result() for future in futures] == [(run, True) for run in made]  # each its own answer
    assert len(opened) == 1
    assert [runs.get(run.id) for run in made] == made and runs.queued() == THREADS


def test_each_submission_makes_its_row_before_it_waits_for_the_turn(
    runs: SQLiteRunStore, hold: Callable[[], subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's row (its parameters' JSON, its values in column order) is made by its own thread before it asks for the
    turn, not in the turn, where the process's other writers and the other processes wait: with another process
    holding the turn and every thread waiting for it, each row is made; once the turn comes, each run is written
    with its own row (a run made by a schedule, with a value in a column a fresh run leaves NULL, among them), and
    an identical run is answered the active run of its key."""
    first = runs.submit(new_run(0))[0]
    made_rows: list[str] = []
    for module in (sql, schema):  # run_row's (schema) and fresh_row's (sql)
        dumps: Callable[[Mapping[str, object]], str] = module.params_json

        def counted(params: Mapping[str, object], dumps: Callable[[Mapping[str, object]], str] = dumps) -> str:
            made_rows.append(str(params["n"]))
            return dumps(params)

        monkeypatch.setattr(module, "params_json", counted)
    scheduled = dataclasses.replace(new_run(THREADS - 1), schedule_id="nightly", fire_time=1.0)
    made = [new_run(0), *(new_run(n) for n in range(1, THREADS - 1)), scheduled]
    holder = hold()
    pool = ThreadPoolExecutor(THREADS)
    try:
        futures = [pool.submit(runs.submit, run, THREADS if n % 2 else None) for n, run in enumerate(made)]
        wait_until(lambda: runs._combiner().waiting == THREADS, timeout=60)  # all asked, the turn still held
        assert sorted(made_rows) == sorted(run.params["n"] for run in made)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        answers = [future.result(timeout=60) for future in futures]
    finally:
        pool.shutdown()
    assert answers == [(first, False), *((run, True) for run in made[1:])]
    assert [runs.get(run.id) for run in [first, *made[1:]]] == [first, *made[1:]] and runs.queued() == THREADS


def test_a_turn_refuses_only_the_runs_past_the_bound_and_answers_an_identical_run_its_run(
    runs: SQLiteRunStore, hold: Callable[[], subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written in one transaction, the runs asked are bounded one by one, as each would be in a transaction of its
    own: those within the bound queued, each past it refused alone (never inserted, the others' kept)."""
    first = runs.submit(new_run(0), max_pending=3)[0]
    opened = transactions(runs, monkeypatch)
    futures = asked_while_held(runs, hold(), [(new_run(0), 3)] + [(new_run(n), 3) for n in range(1, THREADS)])
    assert futures[0].result() == (first, False)
    refused = [future.exception() for future in futures[1:] if future.exception() is not None]
    assert [str(exc) for exc in refused] == ["3 runs are queued, the most this service accepts"] * (THREADS - 3)
    assert all(isinstance(exc, QueueFull) for exc in refused)
    assert len(opened) == 1
    assert runs.queued() == runs.count(RunState.PENDING) == runs.count() == 3


def test_a_turn_that_never_comes_fails_every_thread_that_awaited_it_and_the_next_submission_is_written(
    runs: SQLiteRunStore, hold: Callable[[], subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = hold()
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 1.0)
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(runs.submit, new_run(n)) for n in range(THREADS)]
        errors = [future.exception(timeout=60) for future in futures]
    assert all(isinstance(exc, sqlite3.OperationalError) for exc in errors), errors
    # each thread raised its own copy (the turn's error its cause), so no traceback gathers the others' frames
    assert len({id(exc) for exc in errors}) == THREADS
    assert all("locked" in str(exc) for exc in errors), errors
    assert runs._combiner().waiting == 0  # none left behind, to be written later for a thread told it was not
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    run, created = runs.submit(new_run(THREADS))
    assert created and runs.count() == 1 and runs.get(run.id) == run


def statements(runs: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements ``runs`` asks inside its transactions from now on (their SQL, one entry each)."""
    asked: list[str] = []
    execute = runs._exec

    def counted(db: sqlite3.Connection, text: str, args: Sequence[object] = ()) -> sqlite3.Cursor:
        asked.append(text.split(" ", 1)[0])
        return execute(db, text, args)

    monkeypatch.setattr(runs, "_exec", counted)
    return asked


def test_a_turn_reads_the_queue_once_and_writes_each_run_in_one_statement(
    runs: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PENDING runs ahead are read once per turn and counted on as its runs are queued: no savepoint around each
    run, no read of the count after each insert (4 statements per run before: SAVEPOINT, INSERT, SELECT, RELEASE)."""
    runs.submit(new_run(0), max_pending=THREADS + 1)
    asked = statements(runs, monkeypatch)
    made = [new_run(n) for n in range(1, THREADS + 1)]
    outcomes = runs.submit_all([(run, THREADS + 1) for run in made])
    assert outcomes == [((run, True), None) for run in made]
    assert asked == ["SELECT"] + ["INSERT"] * THREADS
    assert runs.queued() == runs.count(RunState.PENDING) == THREADS + 1


def test_a_turn_of_several_takes_the_writers_turn_and_enters_the_fork_gate_once(
    runs: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn held around a turn's transaction is not taken again to begin it (the gate's count and the turn's
    reentrant lock once more), and the runs are written all the same."""
    runs.submit(new_run(0), max_pending=THREADS + 1)
    entered: list[str] = []
    for name, kind in (("turn", sqlite.Writers), ("gate", type(sqlite.SQLITE))):
        enter: Callable[[object], None] = getattr(kind, "__enter__")  # noqa: B009 -- two kinds, one entry each

        def counted(self: object, enter: Callable[[object], None] = enter, name: str = name) -> None:
            entered.append(name)
            enter(self)

        monkeypatch.setattr(kind, "__enter__", counted)
    made = [new_run(n) for n in range(1, THREADS + 1)]
    assert runs.submit_all([(run, THREADS + 1) for run in made]) == [((run, True), None) for run in made]
    assert sorted(entered) == ["gate", "turn"]
    assert [runs.get(run.id) for run in made] == made and runs.queued() == THREADS + 1


def test_a_full_queue_still_answers_an_identical_active_run_and_refuses_a_new_one_unwritten(
    runs: SQLiteRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound, a run whose key has an active run is answered that run, as below it; a new one is refused
    before its insert (nothing to roll back), and the runs after it in the turn are bounded as before."""
    active = [runs.submit(new_run(n), max_pending=2)[0] for n in range(2)]
    asked = statements(runs, monkeypatch)
    outcomes = runs.submit_all([(new_run(1), 2), (new_run(5), 2), (new_run(6), None)])
    assert outcomes[0] == ((active[1], False), None)
    answer, error = outcomes[1]
    assert answer is None and isinstance(error, QueueFull)
    assert str(error) == "2 runs are queued, the most this service accepts"
    assert outcomes[2][1] is None and outcomes[2][0] is not None and outcomes[2][0][1]  # unbounded: queued
    assert asked == ["SELECT", "SELECT", "SELECT", "INSERT"]
    assert runs.queued() == runs.count(RunState.PENDING) == 3
    with pytest.raises(QueueFull, match="^3 runs are queued"):  # alone in its turn: raised, as submit raises
        runs.submit(new_run(7), max_pending=3)
    assert runs.count() == 3


def statements_said(traced: list[str]) -> list[str]:
    """The first word of each statement a connection's trace told (each trigger a statement fires is told again as
    that statement's text: told once here)."""
    return [text.split(" ", 1)[0] for text, _ in itertools.groupby(traced)]


def test_a_run_alone_in_its_turn_is_one_statement_committed_before_its_answer(runs: SQLiteRunStore) -> None:
    """Alone in its turn, a run is its insert (bounded by the count it reads), in autocommit: no BEGIN, no read of
    the count, no COMMIT, each a statement around which the sqlite3 module lets go of the GIL; another connection
    finds it as soon as it is answered. An identical active run is answered, full queue or not; a new run past the
    bound is refused, nothing of it written."""
    runs.check()  # the writing connection opened, its schema read
    said: list[str] = []
    runs._writing().set_trace_callback(said.append)
    try:
        first, created = runs.submit(new_run(0), max_pending=1)
        assert created and statements_said(said) == ["INSERT"], said
        assert closed_at_end(SQLiteRunStore(runs.path)).get(first.id) == first  # committed: another connection reads it
        said.clear()
        assert runs.submit(new_run(0), max_pending=1) == (first, False)  # the queue is full: its run all the same
        assert statements_said(said) == ["INSERT", "SELECT"], said
    finally:
        runs._writing().set_trace_callback(None)
    with pytest.raises(QueueFull, match="^1 runs are queued"):
        runs.submit(new_run(1), max_pending=1)
    assert runs.count() == runs.queued() == 1
    assert runs.submit(new_run(1))[1] and runs.queued() == 2  # unbounded: queued


def test_a_run_alone_in_its_turn_leaves_the_columns_it_has_not_null(runs: SQLiteRunStore) -> None:
    """The values a new run has not yet (its start, its end, its error...) are NULL in the file, as SQL reads them
    (``IS NULL``, ``typeof``) and as another process finds them, whatever adapts a None to what SQLite binds; and the
    run reads back as it was submitted."""
    run, created = runs.submit(new_run(0), max_pending=10)
    assert created
    unset = [column for column, value in zip(RUN_COLUMNS, run_row(run), strict=True) if value is None]
    assert "started_at" in unset and "error" in unset
    with closing(sqlite3.connect(runs.path)) as other:
        kinds = other.execute(f"SELECT {', '.join(f'typeof({c})' for c in unset)} FROM runs WHERE id = ?", (run.id,))
        assert list(kinds.fetchone()) == ["null"] * len(unset)
    assert closed_at_end(SQLiteRunStore(runs.path)).get(run.id) == run
