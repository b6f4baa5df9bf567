"""A descriptor threads use while another closes it (nectar/descriptors.py): a close wakes each poller at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from nectar.descriptors import SharedDescriptor
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.nectar.test_wakeup import FOREVER, sleeps_long_in_poll


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
