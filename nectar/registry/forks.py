"""A gate that makes a fork wait until no other thread of the process is inside SQLite.

SQLite keeps state per process that a fork copies as it is: the locks a connection holds on the WAL
index (the write lock of an open transaction, a read mark), and its own mutexes. A child forked while
another thread of its parent was inside a transaction inherits them held by a connection that will never
release them there, and every connection the child opens finds the database locked: a step forked from an
attempt (its heartbeat thread writing) waited 30 s per write, forever. The registry's threads use SQLite
through :data:`SQLITE` (:meth:`ForkGate.inside`), as many at once as they like; a fork waits for the last
one to leave, and holds the next until it is done.
"""

from __future__ import annotations

import os
import threading


class ForkGate:
    """Threads enter and leave at will (``with gate.inside():``); a fork (``before`` to ``after_*``) waits until
    none is in, and keeps out all but the forking thread itself (whose own hooks may use what the gate guards)
    until it is done."""

    def __init__(self) -> None:
        self._open()

    def _open(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        #: how many threads are inside; the thread that is forking, if one is (it holds the lock meanwhile)
        self._inside = 0
        self._forking: int | None = None
        #: how deep each thread is inside (the registry may nest its uses): only its outermost counts
        self._depth = threading.local()

    def inside(self) -> ForkGate:
        """While the caller uses what the gate guards: no fork happens meanwhile."""
        return self

    def __enter__(self) -> None:
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        if depth or self._forking == threading.get_ident():  # in already (a fork waits for it), or forking
            return
        with self._lock:
            while self._forking is not None:
                self._changed.wait()
            self._inside += 1

    def __exit__(self, *_: object) -> None:
        self._depth.n -= 1
        if self._depth.n or self._forking == threading.get_ident():
            return
        with self._lock:
            self._inside -= 1
            if self._forking is not None and not self._inside:
                self._changed.notify_all()

    def before_fork(self) -> None:
        """Wait until no other thread is inside, and keep the gate (its lock held across the fork)."""
        self._lock.acquire()
        self._forking = threading.get_ident()
        while self._inside > self._mine():
            self._changed.wait()

    def _mine(self) -> int:
        """1 if this thread is inside (it forks from there: it is not waited for), else 0."""
        return 1 if getattr(self._depth, "n", 0) else 0

    def after_fork_in_parent(self) -> None:
        self._forking = None
        self._changed.notify_all()
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """The child's only thread is the one that forked: a gate of its own, open, nobody else inside."""
        depth = getattr(self._depth, "n", 0)
        self._open()
        self._depth.n, self._inside = depth, self._mine()

    def register(self) -> None:
        """Make every fork of this process go through the gate."""
        os.register_at_fork(
            before=self.before_fork, after_in_parent=self.after_fork_in_parent, after_in_child=self.after_fork_in_child
        )


#: the gate of the SQLite registry's threads in this process
SQLITE = ForkGate()
SQLITE.register()
