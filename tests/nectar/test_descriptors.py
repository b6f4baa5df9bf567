"""A descriptor threads use while another closes it (nectar/descriptors.py): a close wakes each poller at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from harness import lifeline_env
from nectar.descriptors import SharedDescriptor
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.nectar.test_runs import new_run
from tests.nectar.test_wakeup import FOREVER, sleeps_long_in_poll

REPOSITORY = Path(__file__).resolve().parents[2]


def test_closing_a_store_wakes_every_thread_waiting_for_work_at_once(tmp_path: Path) -> None:
    """Two threads sleep in a wait for work of an hour; the store's close ends both sleeps, and each says a run may
    have been queued (the next wait makes a new descriptor)."""
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
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
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
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
