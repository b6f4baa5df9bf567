"""How many connections a process's threads open on the SQLite registry: as many as read at once, not one each; and
that none is lent again inside an old read transaction."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from nectar.registry import Run, RunState
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end, known
from tests.nectar.test_runs import new_run

#: seconds that only fail a hung test
PATIENCE = 60.0
#: an API worker's threads (gunicorn_conf's default)
THREADS = 8


def open_on(path: Path) -> int:
    """How many descriptors of this process are open on ``path`` (a SQLite connection opens its file once)."""
    fds = Path("/proc/self/fd")
    found = 0
    for fd in os.listdir(fds):
        try:
            found += os.readlink(fds / fd) == str(path)
        except OSError:  # closed meanwhile (listdir's own descriptor among them)
            pass
    return found


def opened_by_threads_in_turn(runs: SQLiteRunStore, run: Run) -> int:
    """How many descriptors are open on the registry once :data:`THREADS` threads have each read ``run``, one after
    the other, all still alive (a thread's own connection would still be open), each having read it as it is."""
    turns = [threading.Event() for _ in range(THREADS + 1)]
    counted, found = threading.Event(), []

    def reader(n: int) -> None:
        assert turns[n].wait(PATIENCE)
        found.append(runs.get(run.id))
        turns[n + 1].set()
        assert counted.wait(PATIENCE)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    turns[0].set()
    try:
        assert turns[THREADS].wait(PATIENCE), "a reader never read"
        return open_on(runs.path)
    finally:
        counted.set()
        for thread in threads:
            thread.join(PATIENCE)
        assert found == [run] * THREADS


def test_threads_that_read_in_turn_open_one_connection_between_them(tmp_path: Path) -> None:
    """An API worker's 8 threads each answered a status lookup and each opened a connection for it, parsing the
    schema (~1 ms of CPU each: a recycled worker's successor paid 8 of them); threads that read one after the other
    now share one."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run, _ = runs.submit(new_run())
    writing = open_on(runs.path)  # the process's connection that writes
    assert opened_by_threads_in_turn(runs, run) - writing == 1


def test_a_thread_reads_over_a_connection_of_its_own_while_another_reads(tmp_path: Path) -> None:
    """A connection is lent to one thread at a time: a read while another thread's read is under way opens a second
    connection, and both are lent again afterwards: threads reading in turn open no third."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    run, _ = runs.submit(new_run())
    writing = open_on(path)
    reading, done = threading.Event(), threading.Event()
    theirs: list[object] = []

    def long_read(db: object) -> object:
        theirs.append(db)
        reading.set()
        assert done.wait(PATIENCE)
        return runs.get(run.id)  # a read inside a read: over the same connection, held by this thread

    other = threading.Thread(target=lambda: theirs.append(runs._read(long_read)))
    other.start()
    try:
        assert reading.wait(PATIENCE), "the other thread never read"
        mine, found = runs._read(lambda db: (db, runs.get(run.id)))
        assert found == run and mine is not theirs[0]
        assert open_on(path) - writing == 2
    finally:
        done.set()
        other.join(PATIENCE)
    assert theirs[1] == run
    assert opened_by_threads_in_turn(runs, run) - writing == 2


class Interrupted(Exception):
    """What stops a read mid-statement (:func:`stopped_mid_statement`)."""


def stopped_mid_statement(db: sqlite3.Connection) -> None:
    """A read that raises with its statement under way (one row of the registry's two read)."""
    rows = db.execute("SELECT id FROM runs")
    assert rows.fetchone() is not None
    raise Interrupted


def test_a_read_that_raised_mid_statement_leaves_later_reads_current(tmp_path: Path) -> None:
    """A read whose query raised with a statement unfinished, its exception still held (a caller that keeps it to log
    or to raise later; here ``pytest.raises``): the process's next read sees what another connection committed since.
    The connection was lent again inside the read transaction the unfinished statement held open, and the next read
    over it answered from the registry as it was: a run another process had cancelled still PENDING."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    other = closed_at_end(SQLiteRunStore(path))  # another process's connections, as far as SQLite can tell
    run, _ = runs.submit(new_run(0))
    runs.submit(new_run(1))
    with pytest.raises(Interrupted) as held:
        runs._read(stopped_mid_statement)
    other.cancel(run.id)
    assert known(runs.get(run.id)).state == RunState.CANCELLED, "a read answered from before the cancel's commit"
    assert held.value is not None


def test_a_read_that_raised_mid_statement_holds_no_snapshot_that_stops_a_checkpoint(tmp_path: Path) -> None:
    """review10's (round 56). A read stopped mid-statement, its exception held; another process commits meanwhile. A
    checkpoint that must get past every reader (TRUNCATE, asked with no wait: a busy answer is a reader still on an
    old snapshot) finds none: the read's statement holds no snapshot once its read has ended."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    other = closed_at_end(SQLiteRunStore(path))
    runs.submit(new_run(0))
    runs.submit(new_run(1))
    with pytest.raises(Interrupted) as held:
        runs._read(stopped_mid_statement)
    other.submit(new_run(2))
    with closing(sqlite3.connect(path, timeout=0)) as probe:
        busy, _, _ = probe.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert held.value is not None
    del held  # the statement freed before the test ends (its descriptor too), whatever the verdict
    assert busy == 0, "a reader holds a snapshot from before the last commit"
