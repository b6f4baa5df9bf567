"""A descriptor threads use while another closes it (nectar/descriptors.py): a close wakes each poller at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar import wakeup
from nectar.descriptors import SharedDescriptor
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_runs import new_run
from tests.nectar.test_wakeup import FOREVER, sleeps_long_in_poll

REPOSITORY = Path(__file__).resolve().parents[2]


def test_closing_a_store_wakes_every_thread_waiting_for_work_at_once(tmp_path: Path) -> None:
    """Two threads sleep in a wait for work of an hour; the store's close ends both sleeps, and each says a run may
    have been queued (the next wait makes a new descriptor)."""
    store = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    assert store.wait_for_work(0.0)  # the first wait returns at once; the next ones sleep
    said: dict[int, bool] = {}

    def waiting() -> None:
        said[threading.get_native_id()] = store.wait_for_work(FOREVER)

    waiters = [threading.Thread(target=waiting, daemon=True) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    wait_until(lambda: all(w.native_id is not None and sleeps_long_in_poll(w.native_id) for w in waiters), timeout=60)
    store.close()
    for waiter in waiters:
        waiter.join(60)
    assert sorted(said.values()) == [True, True], said


def test_a_descriptor_closed_while_polled_is_closed_by_its_last_poller() -> None:
    """Never a poll on a closed number: the close wakes the pollers, and the number (and the close's own eventfd)
    is closed once the last of them gave it back; a poll after the close is refused."""
    read, write = os.pipe()
    pipe = os.fstat(read)
    try:
        owner = threading.Event()  # any object a weak reference can be made to
        shared = SharedDescriptor(read, owner)
        said: list[bool | None] = []
        poller = threading.Thread(target=lambda: said.append(shared.poll([], FOREVER)), daemon=True)
        poller.start()
        wait_until(lambda: poller.native_id is not None and sleeps_long_in_poll(poller.native_id), timeout=60)
        shared.close()
        poller.join(60)
        assert said == [None]
        assert shared.poll([], FOREVER) is None
    finally:
        os.close(write)
    try:  # closed by the poller as it gave it back, before it ended (the number another file's since, or none)
        now = os.fstat(read)
        assert (now.st_dev, now.st_ino) != (pipe.st_dev, pipe.st_ino)
    except OSError:
        pass


_OUT_OF_DESCRIPTORS = """
import logging, os, resource, sys
from pathlib import Path
from nectar.registry.sqlite import SQLiteRunStore
from tests.nectar.test_runs import new_run

logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
store = SQLiteRunStore(Path(sys.argv[1]))
assert store.wait_for_work(0.0)  # the first wait: the word's descriptor made
store.submit(new_run())  # the word written: the next wait returns at once
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
spent = []
try:
    while True:
        spent.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    print("out of descriptors:", exc.strerror, flush=True)
print("queued", store.wait_for_work(120.0), flush=True)
print("nothing", store.wait_for_work(0.0), flush=True)
"""


def test_a_wait_for_work_with_no_descriptor_to_spare_still_wakes_for_a_queued_run(tmp_path: Path) -> None:
    """A process at its limit of descriptors (a real ``EMFILE``: ``RLIMIT_NOFILE`` lowered, then every number
    taken) cannot make the ``eventfd`` a close wakes pollers by: its wait for work still wakes for the run queued
    (the word's own descriptor readable), and a wait with nothing queued sleeps out its timeout; said once at WARNING.
    The ``OSError`` escaped from ``wait_for_work`` before."""
    said = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(tmp_path / "runs.sqlite3")],
        cwd=REPOSITORY,
        env={**os.environ, **lifeline_env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = said.stdout.splitlines()
    assert said.returncode == 0, said.stdout + said.stderr
    assert lines[0] == "out of descriptors: Too many open files", lines
    assert lines[1:] == [
        "WARNING no eventfd to wake pollers at a close ([Errno 24] Too many open files):"
        " a close during a poll is seen at its end",
        "queued True",
        "nothing False",
    ], lines


def test_a_run_queued_while_another_thread_waited_wakes_this_ones_next_wait(tmp_path: Path) -> None:
    """Two threads wait for work on the process's one descriptor of the word: a run queued between two waits of one
    thread, while the other slept, wakes the first's next wait at once, as it would with one thread (the word kept
    until its next wait). The other drained the word, and the first's next wait slept out its timeout."""
    store = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    assert store.wait_for_work(0.0)  # the process's first wait returns at once; the next ones sleep
    said: dict[str, bool] = {}
    again = threading.Event()

    def first() -> None:
        said["first's wait"] = store.wait_for_work(0.0)  # nothing queued: its wait over
        again.wait(60)
        said["first's next wait"] = store.wait_for_work(FOREVER)

    def other() -> None:
        said["other's"] = store.wait_for_work(FOREVER)

    waiters = [threading.Thread(target=target, daemon=True) for target in (first, other)]
    waiters[0].start()
    wait_until(lambda: "first's wait" in said, timeout=60)
    waiters[1].start()
    wait_until(lambda: waiters[1].native_id is not None and sleeps_long_in_poll(waiters[1].native_id), timeout=60)
    store.submit(new_run())  # queued between the first thread's two waits
    waiters[1].join(60)
    again.set()
    wait_until(lambda: "first's next wait" in said, timeout=60)  # slept for ever before
    assert said == {"first's wait": False, "other's": True, "first's next wait": True}


@pytest.fixture
def word() -> Iterator[tuple[SharedDescriptor, int]]:
    """A descriptor of a pipe's reading end, shared, and the pipe's writing end."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    owner = threading.Event()  # any object a weak reference can be made to
    shared = SharedDescriptor(read, owner)
    yield shared, write
    shared.close()
    os.close(write)


def _sleeping(thread: threading.Thread) -> bool:
    return thread.native_id is not None and sleeps_long_in_poll(thread.native_id)


def test_two_pollers_woken_by_one_write_count_it_once(
    word: tuple[SharedDescriptor, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads sleeping on the descriptor both wake for one write; the one that drains it counts it, the other
    (which found it drained) does not: neither's next poll says there was another. Counted twice, one's next poll
    returned at once, for a wake it had seen. Both held after their sleep until both have woken (they would be, in
    any order the scheduler picks: a test cannot make it pick this one otherwise)."""
    shared, write = word
    real, both = wakeup.readable, threading.Barrier(2, timeout=60)

    def readable(fds: list[int], timeout: float) -> list[int]:
        woken = real(fds, timeout)
        both.wait()
        return woken

    monkeypatch.setattr(wakeup, "readable", readable)
    said: dict[str, list[bool | None]] = {"a": [], "b": []}

    def polls(name: str) -> None:
        said[name] += [shared.poll([], FOREVER), shared.poll([], 0.0)]

    pollers = [threading.Thread(target=polls, args=(name,), daemon=True) for name in said]
    for poller in pollers:
        poller.start()
    wait_until(lambda: all(_sleeping(poller) for poller in pollers), timeout=60)
    os.write(write, b"q")
    for poller in pollers:
        poller.join(60)
    assert said == {"a": [True, False], "b": [True, False]}


def test_a_poller_woken_otherwise_while_another_wrote_to_it_sleeps_again_at_its_next_poll(
    word: tuple[SharedDescriptor, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread whose sleep ended for another of its descriptors, just before another thread drained a wake and
    wrote to it, counts the wake and sleeps again at its next poll. Its own descriptor was left written, and its next
    poll returned at once, said nothing, and slept no more. Held after its first sleep until the other wrote (a test
    cannot make the scheduler pick that order otherwise)."""
    shared, write = word
    real, hold, again = wakeup.readable, threading.Event(), threading.Event()
    other_read, other_write = os.pipe()

    def readable(fds: list[int], timeout: float) -> list[int]:
        woken = real(fds, timeout)
        if other_read in fds:
            hold.wait(60)
        return woken

    monkeypatch.setattr(wakeup, "readable", readable)
    said: dict[str, list[bool | None]] = {"a": [], "b": []}

    def first() -> None:
        said["a"].append(shared.poll([other_read], FOREVER))
        again.wait(60)
        said["a"].append(shared.poll([], FOREVER))

    def second() -> None:
        said["b"].append(shared.poll([], FOREVER))

    a, b = (threading.Thread(target=target, daemon=True) for target in (first, second))
    try:
        a.start()
        b.start()
        wait_until(lambda: _sleeping(a) and _sleeping(b), timeout=60)
        os.write(other_write, b"x")  # a's sleep ends: held before it looks at what woke it
        wait_until(lambda: not _sleeping(a), timeout=60)
        os.write(write, b"q")  # b drains it and writes to a's, still noted asleep
        b.join(60)
        hold.set()
        wait_until(lambda: said["a"] == [True], timeout=60)
        again.set()
        wait_until(lambda: len(said["a"]) == 2 or _sleeping(a), timeout=60)
        assert said == {"a": [True], "b": [True]}
        shared.close()
        a.join(60)
        assert said == {"a": [True, None], "b": [True]}
    finally:
        os.close(other_read)
        os.close(other_write)
