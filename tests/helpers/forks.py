"""A child forked while a thread of its parent holds something (a lock, a transaction), and what the child says."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from nectar import wakeup

#: seconds that only fail a hung test
PATIENCE = 120.0


def said_by_a_child_forked_while_held(held: AbstractContextManager[object], child: Callable[[], bytes]) -> bytes:
    """Fork while another thread is inside ``held``; the bytes ``child`` returns in the child, read from a pipe
    (b"" when it raised, or hung: killed after :data:`PATIENCE`, so that no stray copy of this process is left)."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with held:
            holding.set()
            release.wait(PATIENCE)

    holder = threading.Thread(target=hold, name="holding at the fork")
    holder.start()
    assert holding.wait(PATIENCE)
    read, written = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child's answer is read from the pipe)
            try:
                os.close(read)
                os.write(written, child())
            finally:
                os._exit(0)
    finally:
        release.set()
    os.close(written)
    holder.join(PATIENCE)
    said = b""
    try:
        if wakeup.readable([read], PATIENCE):  # the answer, or the end of the pipe: the child exited
            said = os.read(read, 65536)
    finally:
        if not said:
            os.kill(pid, signal.SIGKILL)  # hung: not left behind for another test's wait
        os.waitpid(pid, 0)
        os.close(read)
    return said
