"""A process's wait for another process's write turn in the kernel's queue of the lock (nectar.registry.turn_waits):
what a writer that leaves its wait by an exception leaves behind, and a deadlock the kernel sees through another
file's turn; against another real process holding the locks."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import pytest

from harness import lifeline_env
from nectar.registry.sqlite import SQLiteRunStore
from nectar.registry.turn_waits import TurnWaiter
from tests.conftest import wait_until
from tests.nectar.test_sqlite_writers import inside_a_transaction

#: a process that takes (waiting in the kernel), releases and tries the POSIX lock of the files it is told, one
#: command a line, and says what it did
HOLDER = """
import fcntl, os, sys
fds = {}
for line in sys.stdin:
    command, path = line.split()
    fd = fds.setdefault(path, os.open(path, os.O_RDWR))
    if command == "lock":
        fcntl.lockf(fd, fcntl.LOCK_EX)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
    print(command + "ed", flush=True)
"""


class Holder:
    """Another process holding the POSIX locks of files as it is told."""

    def __init__(self) -> None:
        env = {**os.environ, **lifeline_env()}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self._said = ThreadPoolExecutor(1)

    def send(self, command: str, path: Path) -> Future[str]:
        """``command`` (lock, unlock) of ``path`` sent; what the process says once it did it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command} {path}\n")
        self.proc.stdin.flush()
        return self._said.submit(self.proc.stdout.readline)

    def do(self, command: str, path: Path) -> None:
        assert self.send(command, path).result(timeout=60) == f"{command}ed\n"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._said.shutdown()


@pytest.fixture
def holder() -> Iterator[Holder]:
    held = Holder()
    try:
        yield held
    finally:
        held.stop()


def blocked_in_kernel(pid: int, path: Path) -> bool:
    """Whether process ``pid`` waits in the kernel's queue of a POSIX lock of ``path`` (a ``->`` line of
    ``/proc/locks``)."""
    inode = os.stat(path).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "->" and fields[2] == "POSIX" and int(fields[5]) == pid:
            if int(fields[6].split(":")[2]) == inode:
                return True
    return False


def turn_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.db-writer"
    path.touch()
    return path


class Interrupted(Exception):
    """Raised by a signal's handler in the main thread."""


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def test_a_writer_that_leaves_its_wait_by_an_exception_leaves_the_lock_to_others_and_no_grant_behind(
    tmp_path: Path, holder: Holder
) -> None:
    """A writer of the main thread waiting for the turn, its wait broken by a signal's handler that raises: the lock
    the waiting thread then takes is released at once (where it stayed the process's, no writer in it: every other
    process waited for it until its busy timeout), and the next writer waits for the lock (where the grant left
    behind let it in without the lock)."""
    turn = turn_file(tmp_path, "registry")
    holder.do("lock", turn)
    waiter = TurnWaiter(os.open(turn, os.O_RDWR | os.O_CLOEXEC), str(tmp_path / "registry.db"))
    previous = signal.signal(signal.SIGUSR1, interrupt)

    def interrupt_once_waiting() -> None:
        wait_until(lambda: blocked_in_kernel(os.getpid(), turn), timeout=60)
        os.kill(os.getpid(), signal.SIGUSR1)

    interrupter = threading.Thread(target=interrupt_once_waiting)
    try:
        interrupter.start()
        with pytest.raises(Interrupted):
            waiter.take(time.monotonic() + 60, lambda: False)
    finally:
        interrupter.join()
        signal.signal(signal.SIGUSR1, previous)
    holder.do("unlock", turn)
    holder.do("lock", turn)  # taken by this process's waiting thread as it came, then released
    gives_up = threading.Event()
    with ThreadPoolExecutor(1) as writer:
        taken = writer.submit(waiter.take, time.monotonic() + 60, gives_up.is_set)
        wait_until(lambda: taken.done() or blocked_in_kernel(os.getpid(), turn), timeout=60)
        gives_up.set()
        assert taken.result(timeout=60) is False
    holder.do("unlock", turn)
    waiter.close()


def test_a_deadlock_the_kernel_sees_through_another_files_turn_is_waited_out(tmp_path: Path, holder: Holder) -> None:
    """This process holds the turn of one file (a writer of another registry in it) as it waits for another
    process's turn at a second file, that process waiting for the first: the kernel answers EDEADLK (it tells no
    thread from another of a process), though the first turn ends without the second. The writer waits on (where it
    was raised the OSError), and takes its turn once the other process had its own."""
    one, two = turn_file(tmp_path, "one"), turn_file(tmp_path, "two")
    holder.do("lock", two)
    one_fd = os.open(one, os.O_RDWR | os.O_CLOEXEC)
    fcntl.lockf(one_fd, fcntl.LOCK_EX)
    other_has_one = holder.send("lock", one)
    wait_until(lambda: blocked_in_kernel(holder.proc.pid, one), timeout=60)
    waiter = TurnWaiter(os.open(two, os.O_RDWR | os.O_CLOEXEC), str(tmp_path / "two.db"))
    with ThreadPoolExecutor(1) as writer:
        taken = writer.submit(waiter.take, time.monotonic() + 60, lambda: False)
        wait_until(lambda: taken.done() or getattr(waiter, "deadlocks", 0) > 0, timeout=60)
        assert not taken.done(), taken.exception()
        fcntl.lockf(one_fd, fcntl.LOCK_UN)
        assert other_has_one.result(timeout=60) == "locked\n"
        holder.do("unlock", two)
        assert taken.result(timeout=60) is True
    os.close(one_fd)
    waiter.close()


def test_a_thread_that_cannot_be_started_fails_one_writer_and_the_next_writes(
    tmp_path: Path, holder: Holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting thread not started (no thread left to the process: faked, a limit this test cannot reach for
    real): that writer is told, and the next one tries again (where the request stayed asked of no thread, and every
    writer of the process waited for it until its deadline, "database is locked", until the process ended)."""
    turn = turn_file(tmp_path, "registry")
    holder.do("lock", turn)
    waiter = TurnWaiter(os.open(turn, os.O_RDWR | os.O_CLOEXEC), str(tmp_path / "registry.db"))
    start = threading.Thread.start

    def cannot_start(thread: threading.Thread) -> None:
        monkeypatch.setattr(threading.Thread, "start", start)
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", cannot_start)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        waiter.take(time.monotonic() + 60, lambda: False)
    holder.do("unlock", turn)
    assert waiter.take(time.monotonic() + 60, lambda: False) is True
    holder.send("lock", turn)
    wait_until(lambda: blocked_in_kernel(holder.proc.pid, turn), timeout=60)
    waiter.close()  # releases the lock: the holder takes it


#: a process whose daemon thread waits for another process's turn at the registry (its busy timeout an hour), once it
#: says so exiting
EXITS_WHILE_WAITING = """
import sys, threading, time
from nectar.registry import sqlite
from harness import wait_until
from tests.helpers.suitenectarB_runs import new_run, waiting_in_the_kernel
sqlite.BUSY_TIMEOUT = 3600.0
runs = sqlite.SQLiteRunStore(sys.argv[1])
threading.Thread(target=runs.submit, args=(new_run(1),), daemon=True).start()
wait_until(lambda: waiting_in_the_kernel(runs.path), timeout=60)
print("waiting", flush=True)
"""


def test_a_process_exits_while_a_daemon_thread_waits_for_another_process_s_turn(tmp_path: Path) -> None:
    """The exit's close of the registry (atexit) waited for the writer, which waited for the other process, up to
    the busy timeout (30 s; here an hour); now the writer gives up as the process exits."""
    path = tmp_path / "registry.db"
    SQLiteRunStore(path).close()
    inside = inside_a_transaction(path)
    env = {**os.environ, **lifeline_env()}
    exits = subprocess.Popen(
        [sys.executable, "-c", EXITS_WHILE_WAITING, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert exits.stdout is not None and exits.stdout.readline() == "waiting\n"
        assert exits.wait(timeout=60) == 0
        assert inside.poll() is None  # the turn was never released meanwhile
    finally:
        for proc in (exits, inside):
            proc.kill()
            proc.wait()
