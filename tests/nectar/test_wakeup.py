"""What wakes a waiting worker: a commit to the registry, one of its own descriptors (a child's exit, a spare's
word), never a look on a timer where the kernel can tell (:mod:`nectar.wakeup`, ``RunStore.wait_for_work``)."""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar import spares, wakeup
from nectar.registry import Run
from nectar.registry.sql import SqlRunStore
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.helpers import registries
from tests.helpers.registries import closed_at_end
from tests.nectar.test_runs import new_run, open_store

__all__ = ["open_store"]  # the fixture: each test with it runs against SQLite and PostgreSQL

#: a wait no test sits out: only a hung test reaches it
FOREVER = 3600.0
#: ``poll(2)``'s number on x86_64, as ``/proc/<pid>/task/<tid>/syscall`` names the call a thread sleeps in
POLL = "7"


def sleeps_long_in_poll(thread_id: int) -> bool:
    """Whether the thread ``thread_id`` of this process sleeps in a ``poll()`` of a second or more (not the short
    looks of a wait that has seen a write it has yet to see committed)."""
    try:
        call = (Path("/proc/self/task") / str(thread_id) / "syscall").read_text().split()
    except OSError:
        return False
    return call[:1] == [POLL] and len(call) > 3 and int(call[3], 16) >= 1000


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    os.close(read)
    os.close(write)


def returns(wait: Callable[[], object]) -> bool:
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
    worker, api = closed_at_end(SQLiteRunStore(path)), closed_at_end(SQLiteRunStore(path))

    def loop() -> None:  # one thread, as a worker's loop
        worker.wait_for_work(0.0)
        api.submit(new_run())  # while the worker's loop looks for work
        worker.wait_for_work(FOREVER)

    assert returns(loop)


def test_a_commit_wakes_a_sqlite_worker_that_reads_nothing_while_it_waits(tmp_path: Path) -> None:
    """The kernel tells when the registry's folder is written: an idle wait reads ``data_version`` once or twice,
    not every 2 ms, and a commit still ends it."""
    path = tmp_path / "data" / "runs.sqlite3"
    worker, api = closed_at_end(SQLiteRunStore(path)), closed_at_end(SQLiteRunStore(path))
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


@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads x86_64's number of poll(2) in /proc")
def test_a_waiting_sqlite_worker_sleeps_through_commits_that_queue_no_run(
    tmp_path: Path, pipe: tuple[int, int]
) -> None:
    """A commit that queues nothing (a heartbeat here; a claim, an attempt's end) does not wake a waiting worker, nor
    does the WAL's write before a submission's commit is published: it wakes once a run it could claim is visible.
    Each heartbeat is made while the worker provably sleeps, and it provably sleeps again after it (the kernel's
    word for it drained, the thread back in a long ``poll()``); a wake would have been counted before."""
    path = tmp_path / "data" / "runs.sqlite3"
    worker, api = closed_at_end(SQLiteRunStore(path)), closed_at_end(SQLiteRunStore(path))
    api.submit(new_run())
    run = api.claim("elsewhere:1")
    assert run is not None
    worker.wait_for_work(0.0)
    read, write = pipe
    woken: list[bool] = []  # at each return of a wait: whether the test's descriptor was why
    waiter: list[int] = []

    def waiting() -> None:  # one thread, as a worker's loop
        waiter.append(threading.get_native_id())
        while not woken or not woken[-1]:
            worker.wait_for_work(FOREVER, [read])
            woken.append(bool(wakeup.readable([read], 0.0)))

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    wait_until(lambda: waiter and sleeps_long_in_poll(waiter[0]), timeout=60)
    own = worker._own().changes
    watch = own[0].fd if own is not None and own[0] is not None else None
    assert watch is not None, "the kernel does not tell this worker of writes"
    for _ in range(3):
        assert api.heartbeat(run.id, run.attempt)
        wait_until(lambda: not wakeup.readable([watch], 0.0) and sleeps_long_in_poll(waiter[0]), timeout=60)
    os.write(write, b"x")
    thread.join(60)

    assert woken == [True], "a commit that queued no run woke the waiting worker"


def test_a_submission_wakes_a_waiting_worker_once_its_run_can_be_claimed(tmp_path: Path) -> None:
    """The word that a run was queued comes after its commit: the woken worker claims it (a claim that found
    nothing would leave it for the next wake)."""
    path = tmp_path / "data" / "runs.sqlite3"
    worker, api = closed_at_end(SQLiteRunStore(path)), closed_at_end(SQLiteRunStore(path))
    worker.wait_for_work(0.0)
    claimed: list[Run | None] = []

    def waiting() -> None:
        worker.wait_for_work(FOREVER)
        claimed.append(worker.claim("here:1"))

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    queued, _ = api.submit(new_run())
    thread.join(60)

    assert [run.id for run in claimed if run is not None] == [queued.id]


def test_the_word_of_a_run_queued_comes_once_its_submitters_turn_at_the_file_is_over(tmp_path: Path) -> None:
    """A submission made in a turn at the registry that lasts (a thread's turn that writes several at once) tells
    the waiting workers once the turn is over, not from inside it: a worker it woke would find the turn taken, and
    sleep before it looked again."""
    path = tmp_path / "data" / "runs.sqlite3"
    api = closed_at_end(SQLiteRunStore(path))
    api.wait_for_work(0.0)  # the word's file made
    word = wakeup.changes(api.queued_word)
    assert word is not None
    try:
        with api._writing_turn():
            queued, created = api.submit(new_run())
            assert created
            told_in_turn = wakeup.readable([word], 0.0)
        told_after = wakeup.readable([word], FOREVER)
    finally:
        os.close(word)

    assert told_in_turn == [], "the word was written while its submitter still held the turn"
    assert told_after == [word]
    assert closed_at_end(SQLiteRunStore(path)).claim("here:1") == api.get(queued.id)


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


def test_a_drain_reads_once_what_one_read_can_hold_and_to_the_end_what_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker woken by a run queued drains the registry's word (inotify), a poller its ``eventfd``, a sleep its
    signals' pipe: one ``read`` each when it took all the descriptor held (a second only heard it was empty), and as
    many as it takes when one read could not hold it all."""
    changed = wakeup.changes(tmp_path)
    assert changed is not None
    counted = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    small_r, small_w = os.pipe()
    large_r, large_w = os.pipe()
    ours = (changed, counted, small_r, large_r)
    reads: list[int] = []
    real_read = os.read

    def read(fd: int, size: int) -> bytes:
        if fd in ours:
            reads.append(fd)
        return real_read(fd, size)

    try:
        for fd in (small_r, large_r):
            os.set_blocking(fd, False)
        (tmp_path / "registry").write_text("a commit")
        (tmp_path / "registry").write_text("another")
        os.eventfd_write(counted, 3)
        os.write(small_w, b"\x0f\x11")
        fcntl.fcntl(large_w, fcntl.F_SETPIPE_SZ, 4 * wakeup.DRAIN_READ)
        written = os.write(large_w, b"x" * (3 * wakeup.DRAIN_READ))
        assert written == 3 * wakeup.DRAIN_READ
        monkeypatch.setattr(os, "read", read)
        assert [wakeup.drain(fd) for fd in (changed, counted, small_r)] == [True, True, True]
        assert reads == [changed, counted, small_r]
        assert wakeup.drain(large_r)
        assert reads.count(large_r) == 4  # three full reads, then the one that found it empty
        monkeypatch.undo()
        assert wakeup.readable(ours, 0.0) == []
        assert not wakeup.drain(small_r)
    finally:
        for fd in (changed, counted, small_r, small_w, large_r, large_w):
            os.close(fd)


def test_a_childs_proc_stat_kept_open_tells_when_its_main_thread_has_exited(tmp_path: Path) -> None:
    """Its ``/proc`` stat is opened once per process and read again at each look (a worker looks at each claim):
    what a read says is the process's state then, not when the descriptor was opened; a child reaped says nothing."""
    reader = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    child = subprocess.Popen(reader, env={**os.environ, **lifeline_env()}, stdin=subprocess.PIPE)
    stat = wakeup.stat_of(child.pid)
    assert stat is not None
    try:
        assert not wakeup.main_thread_exited(stat)
        assert not wakeup.main_thread_exited(stat), "a second read of the same descriptor"
        assert child.stdin is not None
        child.stdin.close()
        exited = wait_until(lambda: wakeup.main_thread_exited(stat), timeout=60)  # a zombie: not reaped yet
        assert exited and child.poll() is not None
        assert not wakeup.main_thread_exited(stat), "a child reaped is no child of ours: nothing to say of it"
    finally:
        os.close(stat)
    assert not wakeup.main_thread_exited(None)


@pytest.mark.parametrize("ended_by", ["its timeout", "a descriptor given"])
def test_without_the_kernels_word_a_commit_in_a_waits_last_look_ends_the_next_wait(
    tmp_path: Path, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch, ended_by: str
) -> None:
    """Where the kernel cannot tell of writes (no inotify: out of instances), a wait reads ``data_version``. A run
    queued during a wait's last sleep, which then ends by its timeout (or by a descriptor given), is the next wait's
    news: that wait returns at once, saying so. (A version read again as the wait ended took it as seen: a worker
    that looks only when told would have left the run PENDING.) The commit is made inside the wait's sleep; the wait
    may tell of it itself (a look after its last sleep)."""
    monkeypatch.setattr(wakeup, "changes", lambda path: None)
    path = tmp_path / "data" / "runs.sqlite3"
    worker, api = closed_at_end(SQLiteRunStore(path)), closed_at_end(SQLiteRunStore(path))
    while worker.wait_for_work(0.0):  # its first waits say a run may have been queued before them
        pass
    read, write = pipe
    sleep = wakeup.readable
    committed: list[Run] = []

    def sleeping(fds: list[int], timeout: float) -> list[int]:  # the wait's sleep: a run queued meanwhile
        if not committed:
            committed.append(api.submit(new_run())[0])
            if ended_by == "a descriptor given":
                os.write(write, b"x")
        return sleep(fds, timeout)

    monkeypatch.setattr(wakeup, "readable", sleeping)
    also = [read] if ended_by == "a descriptor given" else []
    told = [worker.wait_for_work(FOREVER if also else 0.001, also)]  # its timeout ends it in the sleep committed in
    monkeypatch.setattr(wakeup, "readable", sleep)
    assert committed
    if not told[0]:  # that wait did not say so: the next one does, at once
        assert returns(lambda: told.append(worker.wait_for_work(FOREVER)))

    assert told[-1], "a run queued in a wait's last sleep was taken as seen"


def test_a_run_queued_before_a_workers_first_wait_is_told_by_that_wait(open_store: Callable[[], SqlRunStore]) -> None:
    """A worker's first wait says a run may have been queued before it listened (PostgreSQL: before its LISTEN, the
    run's NOTIFY reached no one), whatever the registry: a worker that found no run looks again only when told."""
    worker, api = open_store(), open_store()
    api.submit(new_run())
    told: list[bool] = []

    assert returns(lambda: told.append(worker.wait_for_work(FOREVER)))
    assert told == [True]


def test_runs_imported_pending_wake_a_waiting_worker(open_store: Callable[[], SqlRunStore]) -> None:
    """A bulk load (:meth:`~nectar.registry.sql.SqlRunStore.import_runs`) that writes a PENDING run tells the waiting
    workers, as a submission does."""
    worker, api = open_store(), open_store()
    worker.wait_for_work(0.0)  # listening from now on
    api.import_runs([new_run(1)])
    told: list[bool] = []

    assert returns(lambda: told.append(worker.wait_for_work(FOREVER)))
    assert told == [True]


def words_open() -> dict[int, str]:
    """This process's descriptors of a word that a run was queued: ``-queued`` files and the kernel's watches."""
    return {
        fd: target
        for fd, target in registries.descriptors().items()
        if target.endswith("-queued") or target == registries.INOTIFY
    }


def test_a_closed_store_holds_no_descriptor_of_the_word_that_a_run_was_queued(tmp_path: Path) -> None:
    """A store's close closes its descriptors of the word (the one it writes, the kernel's watch of it), not only
    its freeing: a store still held after its close (a worker's executor in the test process) kept them, 17 files
    and 12 watches in an xdist worker by the end of ``tests/nectar``. A later use opens them again."""
    before = words_open()
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    runs.wait_for_work(0.0)
    runs.submit(new_run())
    opened = {fd: target for fd, target in words_open().items() if before.get(fd) != target}
    assert sorted(opened.values()) == sorted([str(runs.queued_word), registries.INOTIFY])
    runs.close()

    assert {fd: target for fd, target in words_open().items() if before.get(fd) != target} == {}
    assert runs.wait_for_work(FOREVER), "a wait after the close, with a watch made anew, returns at once"
    assert runs.submit(new_run(1))[1]
    assert runs.wait_for_work(FOREVER), "a submission after the close gives the word"
    runs.close()


def test_a_close_ends_a_wait_and_the_wait_closes_the_watch_as_it_returns(tmp_path: Path, pipe: tuple[int, int]) -> None:
    """A close while another thread sleeps in a ``poll()`` of the store's watch ends that sleep at once (not at its
    timeout, nor at one of its own descriptors), and the watch is closed by the wait as it returns: closed under
    it, its number could be given to another file, which the wait's drain would then read (its own
    ``SharedDescriptor``'s test, tests/nectar/test_descriptors.py, checks the order)."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    runs.wait_for_work(0.0)
    own = runs._own().changes
    watch = own[0].fd if own is not None and own[0] is not None else None
    assert watch is not None, "the kernel does not tell this process of writes"
    read, _ = pipe
    waiter: list[int] = []
    told: list[bool] = []

    def waiting() -> None:
        waiter.append(threading.get_native_id())
        told.append(runs.wait_for_work(FOREVER, [read]))

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    wait_until(lambda: waiter and sleeps_long_in_poll(waiter[0]), timeout=60)
    runs.close()
    thread.join(60)

    assert told == [True]  # a run may have been queued: the next wait makes another watch
    assert registries.descriptors().get(watch) != registries.INOTIFY, "the watch outlived the wait after the close"


def voluntary_switches(thread_id: int) -> int:
    """How often the thread ``thread_id`` of this process has gone to sleep (each sleep ends in a wake-up)."""
    status = (Path("/proc/self/task") / str(thread_id) / "status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt_switches"))


def sleeps_in_poll_for_ever(thread_id: int) -> bool:
    """Whether the thread ``thread_id`` of this process sleeps in a ``poll()`` with no timeout."""
    try:
        call = (Path("/proc/self/task") / str(thread_id) / "syscall").read_text().split()
    except OSError:
        return False
    return call[:1] == [POLL] and len(call) > 3 and int(call[3], 16) & 0xFFFFFFFF == 0xFFFFFFFF  # an int, -1


@pytest.mark.skipif(platform.system() != "Linux", reason="a thread's system call and switches are read in /proc")
def test_a_spare_waiting_for_its_run_sleeps_through_its_workers_read_of_its_word() -> None:
    """A thread in a blocking ``recv`` of a Unix stream socket is woken when its peer reads what it wrote (for the
    space freed), to find nothing and sleep again: a spare that said it was ready and waited for its run so was woken
    once more each run, as its worker read that word before claiming for it (round 62). It waits in a poll."""
    worker, spare = socket.socketpair()
    got: list[bytes | None] = []

    def waits() -> None:
        spare.sendall(spares.READY)
        got.append(spares._read_run(spare))

    thread = threading.Thread(target=waits, daemon=True)
    thread.start()
    try:
        waiting = thread.native_id
        assert waiting is not None
        wait_until(lambda: sleeps_in_poll_for_ever(waiting))
        slept = voluntary_switches(waiting)
        assert worker.recv(1) == spares.READY  # its worker reads its word: the kernel wakes what waits on that queue
        assert voluntary_switches(waiting) == slept and sleeps_in_poll_for_ever(waiting)
        run = b"handed"
        worker.sendall(spares._LENGTH.pack(len(run)) + run)
        thread.join(FOREVER)
        assert got == [run]
    finally:
        worker.close()
        spare.close()
