"""What wakes a waiting worker: a commit to the registry, one of its own descriptors (a child's exit, a spare's
word), never a look on a timer where the kernel can tell (:mod:`nectar.wakeup`, ``RunStore.wait_for_work``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar import wakeup
from nectar.registry.sql import SqlRunStore
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.nectar.test_runs import new_run, open_store

__all__ = ["open_store"]  # the fixture: each test with it runs against SQLite and PostgreSQL

#: a wait no test sits out: only a hung test reaches it
FOREVER = 3600.0
#: a process that takes the turn to write the registry as a transaction takes it and says so, then, told to, commits
#: a run within it (its last write, then its publication) and ends its turn
COMMITTER = """
import sys
from nectar.registry import Run
from nectar.registry.sqlite import SQLiteRunStore
runs = SQLiteRunStore(sys.argv[1])
with runs._writer():
    print("holding", flush=True)
    sys.stdin.readline()
    runs.submit(Run.new("chains/t/c_chain/ATask/0/out.txt", "t", "c_chain", "ATask", {}, "ATask_0"))
"""


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    os.close(read)
    os.close(write)


def returns(wait: Callable[[], None]) -> bool:
    """Whether ``wait()`` returns, without raising, within a deadline that only a hung wait reaches."""
    returned = threading.Event()

    def waiting() -> None:
        wait()
        returned.set()

    waiter = threading.Thread(target=waiting, daemon=True)
    waiter.start()
    waiter.join(60)
    return returned.is_set()


def test_a_readable_descriptor_given_ends_the_wait_for_work(
    open_store: Callable[[], SqlRunStore], pipe: tuple[int, int]
) -> None:
    """A worker's own events (a child exited, a spare is ready) wake it as a queued run does."""
    store = open_store()
    store.wait_for_work(0.0)
    read, write = pipe
    os.write(write, b"x")

    assert returns(lambda: store.wait_for_work(FOREVER, [read]))


def test_a_commit_made_between_two_waits_ends_the_second_at_once(tmp_path: Path) -> None:
    """A run queued while the worker looked for work (after its wait returned, before the next began) is not
    left until the next wait's timeout."""
    path = tmp_path / "data" / "runs.sqlite3"
    worker, api = SQLiteRunStore(path), SQLiteRunStore(path)

    def loop() -> None:  # one thread, as a worker's loop
        worker.wait_for_work(0.0)
        api.submit(new_run())  # while the worker's loop looks for work
        worker.wait_for_work(FOREVER)

    assert returns(loop)


def test_a_commit_wakes_a_sqlite_worker_that_reads_nothing_while_it_waits(tmp_path: Path) -> None:
    """The kernel tells when the registry's folder is written: an idle wait reads ``data_version`` once or twice,
    not every 2 ms, and a commit still ends it."""
    path = tmp_path / "data" / "runs.sqlite3"
    worker, api = SQLiteRunStore(path), SQLiteRunStore(path)
    worker.wait_for_work(0.0)
    statements: list[str] = []
    worker._connection().set_trace_callback(statements.append)

    worker.wait_for_work(0.3)
    idle = len(statements)
    started, woken = threading.Event(), threading.Event()

    def waiting() -> None:  # on a thread of its own: its own connection, its own last wait
        worker.wait_for_work(0.0)
        started.set()
        worker.wait_for_work(FOREVER)
        woken.set()

    threading.Thread(target=waiting, daemon=True).start()
    assert started.wait(60)
    api.submit(new_run())

    assert idle <= 3, statements
    assert woken.wait(60), "the submission's commit never woke the waiting worker"


def test_a_commit_the_kernel_told_of_before_it_showed_wakes_the_worker_however_late_it_shows(
    tmp_path: Path, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit writes the WAL (the kernel tells) before it publishes its pages (which the kernel does not tell): a
    committer held up between the two for longer than ``SETTLE`` (a loaded machine) still wakes the worker, which
    looks for as long as another process holds the turn to write. Here the test gives the kernel's word itself: the
    write told, and none after, as a commit published late has none."""
    told, tell = pipe
    os.set_blocking(told, False)  # as inotify's descriptor is
    monkeypatch.setattr(wakeup, "changes", lambda folder: os.dup(told))  # (the store closes its own copy)
    monkeypatch.setattr(SQLiteRunStore, "SETTLE", 0.0)  # the committer is held up longer than any settle
    path = tmp_path / "data" / "runs.sqlite3"
    worker = SQLiteRunStore(path)
    committer = subprocess.Popen(
        [sys.executable, "-c", COMMITTER, str(path)],
        env={**os.environ, **lifeline_env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert committer.stdin is not None and committer.stdout is not None
    reads: list[str] = []
    started, woken = threading.Event(), threading.Event()

    def waiting() -> None:  # one thread, as a worker's loop
        worker.wait_for_work(0.0)
        worker._connection().set_trace_callback(reads.append)  # this thread's looks at data_version from now on
        started.set()
        worker.wait_for_work(FOREVER)
        woken.set()

    try:
        assert committer.stdout.readline() == "holding\n"
        threading.Thread(target=waiting, daemon=True).start()
        assert started.wait(60)
        os.write(tell, b"w")  # the committer wrote the WAL
        wait_until(lambda: not wakeup.readable([told], 0.0) and reads, timeout=60)  # read, and looked: nothing yet
        committer.stdin.write("commit\n")  # published, its turn ended: no word of it from the kernel
        committer.stdin.close()
        assert committer.wait(60) == 0

        assert woken.wait(60), "a commit published after the kernel's word never woke the worker"
    finally:
        committer.kill()
        committer.wait()


def test_a_childs_exit_and_a_folders_write_make_their_descriptors_readable(tmp_path: Path) -> None:
    changed = wakeup.changes(tmp_path)
    reader = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    child = subprocess.Popen(reader, env={**os.environ, **lifeline_env()}, stdin=subprocess.PIPE)
    exited = wakeup.exits(child.pid)
    assert changed is not None and exited is not None
    try:
        assert wakeup.readable([changed, exited], 0.0) == []
        (tmp_path / "registry").write_text("a commit")
        assert wakeup.readable([changed, exited], FOREVER) == [changed]
        wakeup.drain(changed)
        assert child.stdin is not None
        child.stdin.close()
        assert wakeup.readable([changed, exited], FOREVER) == [exited]
        child.wait()
    finally:
        os.close(changed)
        os.close(exited)
