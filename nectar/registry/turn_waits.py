"""A process's wait for another process's write turn, made in the kernel's queue of the lock: woken as it is released.

Where the lock was tried, then tried again after sleeps of 50 µs doubling to 1 ms, a writer woke up to 1 ms after
the turn was free, and each sleep was a wake-up of its own. Here one thread of the process (:class:`TurnWaiter`,
started at its first wait) waits for the lock with ``F_SETLKW``; the writer that asked waits on a condition, for the
lock or for its own end (the busy timeout, or a caller that gives up): a blocking lock cannot be given up, a wait on
a condition can. The lock is the process's (a POSIX lock: no fork inherits it, the kernel releases it as its process
dies), so the thread that waited takes it for the writer that asked.

A writer that gives up leaves its request behind: the next writer of the process adopts it; if none has when the lock
comes, the waiting thread releases it at once. The lock is tried without a wait only while no request is left
behind: a lock of the process taken meanwhile would be the waiting thread's too, and released with the request."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable

from nectar.process_threads import process_thread

#: seconds between two looks at whether a waiting writer gives up (it is woken at once when the lock is its): the
#: checkpointer's, as its process closes the registry, waits for no more than this to give up
LOOK_EVERY = 0.005


class TurnWaiter:
    """The kernel's lock of ``fd`` (the write turn of ``registry``), taken for the process's writers one at a time;
    the caller serialises its own threads (:class:`~nectar.registry.sqlite.Writers` holds its threads' lock)."""

    def __init__(self, fd: int, registry: str) -> None:
        self._fd = fd
        self._registry = registry
        self._state = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        #: a wait in the kernel asked and not yet answered; whether its writer gave it up; whether the lock is taken
        self._asked = self._abandoned = self._granted = False
        self._failed: OSError | None = None
        self._closed = False
        #: the kernel's answers EDEADLK to the waiting thread, each one asked again
        self.deadlocks = 0

    def take(self, deadline: float, gives_up: Callable[[], bool]) -> bool:
        """The lock taken (True), or not before ``deadline`` (``time.monotonic``) or ``gives_up()`` (False)."""
        with self._state:
            if not self._asked:
                try:
                    fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
                self._ask()
            self._abandoned = False  # a request left behind is this writer's now
            try:
                while not self._granted:
                    if self._failed is not None:
                        failed, self._failed = self._failed, None
                        raise failed
                    now = time.monotonic()
                    if now >= deadline or gives_up():
                        self._abandoned = True
                        return False
                    self._state.wait(min(LOOK_EVERY, deadline - now))
            except BaseException:  # a signal's handler that raises, a gives_up() that does: left as a give-up
                if self._granted:  # the lock came as it left: no writer's
                    self._granted = False
                    fcntl.lockf(self._fd, fcntl.LOCK_UN)
                self._abandoned = True
                raise
            self._granted = False
            return True

    def close(self) -> None:
        """The descriptor closed, the caller holding no lock of the process on the file (a close releases them), and
        the waiting thread ended. With a wait in the kernel under way, the thread's to close as that wait ends, its
        number put on ``/dev/null`` now (no other file can be given the number meanwhile, and the registry's file is
        let go): as the lock comes, the kernel finds the number no longer on the file and releases it (``EBADF``)."""
        with self._state:
            self._closed = True
            if self._asked:
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                os.dup2(null, self._fd, inheritable=False)
                os.close(null)
            else:
                os.close(self._fd)
            self._state.notify_all()

    def _ask(self) -> None:
        """A wait in the kernel asked of the thread (started at the first), the caller holding ``_state``. A thread
        that cannot be started ("can't start new thread") raises, nothing asked: the next writer tries again."""
        if self._thread is None:
            thread = process_thread(
                threading.Thread(target=self._wait, name="sqlite-turn", daemon=True), self._registry
            )
            thread.start()
            self._thread = thread
        self._asked = True
        self._state.notify_all()

    def _wait(self) -> None:
        while True:
            with self._state:
                while not self._asked and not self._closed:
                    self._state.wait()
                if not self._asked:
                    return
            failed: OSError | None = None
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX)
            except OSError as error:
                failed = error
            with self._state:
                if isinstance(failed, OSError) and failed.errno == errno.EDEADLK and not self._abandoned:
                    # a cycle the kernel sees through another turn of the process (it tells no thread from another:
                    # one thread's turn at another file, this wait): asked again; a true one (a turn taken inside
                    # another) ends as its writer gives up at its deadline
                    self.deadlocks += 1
                    self._state.wait(LOOK_EVERY)
                    continue
                self._asked = False
                if self._closed:  # since it was asked: the number is this thread's to close
                    os.close(self._fd)
                    return
                if failed is not None:
                    self._failed = None if self._abandoned else failed
                elif self._abandoned:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN)
                else:
                    self._granted = True
                self._state.notify_all()
