"""Writers of one SQLite registry take turns in the kernel, processes as well as threads: a POSIX lock of
``<registry>-writer`` held for a write transaction, released when its process dies (nectar.registry.sqlite.Writers);
the threads of a process write through one connection."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from api.errors import describe
from harness import lifeline_env, read_calls
from nectar.errors import RegistryUnavailable
from nectar.registry import RunState, sqlite
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_runs import new_run, waiting_in_the_kernel

#: a process that opens the registry, enters a write transaction and says so, then waits there until it is killed
INSIDE = """
import sys, time
from nectar.registry.sqlite import SQLiteRunStore
with SQLiteRunStore(sys.argv[1])._db():
    print("inside", flush=True)
    time.sleep(3600)
"""


def writer_holding(path: Path) -> int | None:
    """The pid of the process holding the write turn of the registry at ``path`` (F_GETLK on its lock file)."""
    turn = Path(f"{path}-writer")
    if not turn.exists():
        return None
    fd = os.open(turn, os.O_RDONLY)
    try:
        return sqlite.turn_holder(fd)
    finally:
        os.close(fd)


def inside_a_transaction(path: Path) -> subprocess.Popen[str]:
    """Another process inside a write transaction of the registry at ``path`` once this returns, until killed; with
    this process's lifeline (harness/lifeline.py): a killed test session leaves it holding nothing."""
    env = {**os.environ, **lifeline_env()}
    proc = subprocess.Popen([sys.executable, "-c", INSIDE, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    said = proc.stdout.readline()
    if said != "inside\n":
        proc.kill()
        proc.wait()
        raise AssertionError(f"the process never entered its transaction; it said {said!r}")
    return proc


@pytest.fixture
def inside(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], SQLiteRunStore]]:
    """Another process inside a write transaction of a registry, until killed; and the registry, opened before."""
    path = tmp_path / "registry.db"
    runs = closed_at_end(SQLiteRunStore(path))
    proc = inside_a_transaction(path)
    try:
        yield proc, runs
    finally:
        proc.kill()
        proc.wait()


def test_a_process_inside_a_write_holds_the_turn_until_it_dies_and_a_writer_then_writes(
    inside: tuple[subprocess.Popen[str], SQLiteRunStore],
) -> None:
    proc, runs = inside
    assert writer_holding(runs.path) == proc.pid  # the kernel knows whose turn it is
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: writer_holding(runs.path) is None, timeout=60)  # released by the kernel with its process
    run, created = runs.submit(new_run(1))
    assert created and runs.get(run.id) is not None
    assert writer_holding(runs.path) is None  # and released by this process's write as soon as it ended


def test_a_writer_that_never_gets_its_turn_is_told_what_sqlite_tells_it(
    inside: tuple[subprocess.Popen[str], SQLiteRunStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As long as SQLite's busy timeout, then SQLite's own error: a stuck writer is a failure, not a hang."""
    _, runs = inside
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.2)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        runs.submit(new_run(2))
    assert runs.count() == 0


def test_a_writer_that_never_gets_its_turn_is_told_the_registry_is_unavailable_as_the_api_answers_it(
    inside: tuple[subprocess.Popen[str], SQLiteRunStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process holding the turn past the busy timeout (stopped, stuck) makes a submission a 503 with Retry-After
    naming the registry, not a 500: the request was fine, the registry is not to be had for now (round 62: a POST
    while a SIGSTOPped worker held the turn answered 500 in CI)."""
    _, runs = inside
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.2)
    with pytest.raises(RegistryUnavailable) as told:
        runs.submit(new_run(3))
    status, message, _ = describe(told.value)
    assert (status, told.value.retry_after) == (503, RegistryUnavailable.retry_after), message
    assert message.startswith("registry unavailable: database is locked"), message


def test_a_writer_waits_for_the_turn_in_the_kernels_queue_and_writes_once_it_is_released(
    inside: tuple[subprocess.Popen[str], SQLiteRunStore],
) -> None:
    """Where the lock was tried again after sleeps of up to 1 ms, the writer is woken by the kernel as it is
    released: a thread of its process waits for it with F_SETLKW."""
    proc, runs = inside
    with ThreadPoolExecutor(1) as writer:
        written = writer.submit(runs.submit, new_run(1))
        wait_until(lambda: waiting_in_the_kernel(runs.path), timeout=60)
        assert not written.done()
        proc.kill()
        proc.wait()
        run, created = written.result(timeout=60)
    assert created and runs.get(run.id) is not None
    assert writer_holding(runs.path) is None


def test_a_writer_that_gives_up_its_wait_leaves_the_turn_to_others_and_the_next_writer_takes_the_wait_over(
    inside: tuple[subprocess.Popen[str], SQLiteRunStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait in the kernel cannot be given up: the lock it takes once no writer of the process wants it is
    released at once, and a writer of the process that comes before it does takes it."""
    proc, runs = inside
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.2)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        runs.submit(new_run(2))  # its wait left behind, in the kernel
    assert waiting_in_the_kernel(runs.path)
    proc.kill()
    proc.wait()
    wait_until(lambda: not waiting_in_the_kernel(runs.path), timeout=60)  # the lock came, and was let go
    other = inside_a_transaction(runs.path)  # another process takes the turn: this one does not hold it
    try:
        assert writer_holding(runs.path) == other.pid
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            runs.submit(new_run(3))  # left behind again
        monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 60.0)
        with ThreadPoolExecutor(1) as writer:
            written = writer.submit(runs.submit, new_run(4))  # takes that wait over
            other.kill()
            other.wait()
            run, created = written.result(timeout=60)
    finally:
        other.kill()
        other.wait()
    assert created and runs.count() == 1 and runs.get(run.id) is not None
    assert writer_holding(runs.path) is None


def own_reads() -> int:
    """Read system calls this process has made (SQLite reads a page with ``pread``)."""
    return read_calls([os.getpid()])[os.getpid()]


def test_threads_of_a_process_write_in_turn_without_reading_again_the_pages_the_last_write_cached(
    tmp_path: Path,
) -> None:
    """A connection drops its cached pages when another connection has committed since its last transaction: with a
    connection per thread, each write after another thread's read every page it touched from the file again. The
    threads of a process write through one connection, so a write after another thread's reads no page."""
    runs = closed_at_end(
        SQLiteRunStore(tmp_path / "registry.db")
    )  # a few runs: each table and index one page, all cached at once
    gc.collect()  # a connection of an earlier test, closed as it is collected, would checkpoint its file meanwhile
    first, second = ThreadPoolExecutor(1), ThreadPoolExecutor(1)  # two threads, each the same one throughout
    rounds = []  # the reads of each thread's write, beyond those of /proc/self/io itself
    try:
        for n in range(4):  # both warm, in turn
            (first if n % 2 else second).submit(runs.submit, new_run(n)).result()
        for n in range(10, 16, 2):  # a read by another thread of this process (pytest's own) may fall in one round
            counting = own_reads()
            before = own_reads()  # the reads of /proc/self/io themselves: counted between two looks
            first.submit(runs.submit, new_run(n)).result()
            between = own_reads()
            second.submit(runs.submit, new_run(n + 1)).result()
            after = own_reads()
            own = before - counting
            rounds.append((between - before - own, after - between - own))
    finally:
        first.shutdown()
        second.shutdown()
    assert (0, 0) in rounds, rounds
    assert runs.count(RunState.PENDING) == 10


def test_a_checked_registry_writes_its_first_run_without_opening_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spare attempt checks the registry as it sets up: both its connections are then open, so its run's first
    write (on the way from the claim to ``run()``) opens none and parses no schema (~1.5 ms a connection)."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    runs.check()
    opened: list[object] = []
    connect = sqlite3.connect

    def counted(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(args)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counted)
    run, created = runs.submit(new_run(1))
    assert created and runs.get(run.id) == run
    assert opened == []


def test_a_callback_after_a_turn_that_raises_skips_neither_the_others_nor_the_checkpointer(tmp_path: Path) -> None:
    """Every callback a turn asked for runs and the checkpointer is told of the turn, the turn released; the first
    error is raised once all have run."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "registry.db"))
    writer = runs._writer()
    called: list[str] = []

    def fails(name: str) -> None:
        called.append(name)
        raise RuntimeError(name)

    told = runs.checkpoints._turns
    with pytest.raises(RuntimeError, match="^first$"):
        with writer:
            assert writer.after_turn(lambda: fails("first"))
            assert writer.after_turn(lambda: fails("second"))
            assert writer.after_turn(lambda: called.append("third"))
    assert called == ["first", "second", "third"]
    assert runs.checkpoints._turns == told + 1
    with ThreadPoolExecutor(1) as other:  # released: another thread takes its turn and writes
        run, created = other.submit(runs.submit, new_run(1)).result(timeout=60)
    assert created and runs.get(run.id) is not None
    runs.close()


def test_a_fork_of_a_process_that_wrote_holds_its_own_turn_whatever_becomes_of_its_copy_of_the_parents(
    tmp_path: Path,
) -> None:
    """A gunicorn master that brought the registry's schema up to date keeps its turn at the file (its descriptor of
    ``<file>-writer``) for its life, and every worker is forked with a copy of it. The worker takes its turn through
    its own; its copy of the master's, closed as an exit handler would close it, closes nothing: a close of any
    descriptor of the file would drop the worker's own lock on it (POSIX locks are the process's, per file)."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))  # a new file: its schema written in this process's turn
    parents = sqlite._WRITERS[(os.getpid(), str(path))]
    said, told = os.pipe()
    gate, opened = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            with runs._writing_turn():
                parents.close()  # the fork's copy
                os.write(told, b"in its turn")
                os.read(gate, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(told)
    try:
        assert os.read(said, 64) == b"in its turn"
        assert writer_holding(path) == child
    finally:
        os.write(opened, b"x")
        _, status = os.waitpid(child, 0)
        for fd in (said, gate, opened):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert writer_holding(path) is None
    runs.submit(new_run(1))  # the parent's turn, its descriptor still its own
