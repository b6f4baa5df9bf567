"""Threads started before they have work: a spare attempt process starts them while it waits for its run, and its
attempt hands them its lease's heartbeat and luigi's keep-alive instead of starting two threads on its way from the
claim to ``run()``.

``threading.Thread.start`` returns once the new thread runs: on 2 loaded cores the attempt waited 0.5-0.6 ms (about
0.2 ms of CPU) at each start for the new thread to get a core and the GIL. Handing work to a thread that waits for it
is the set of an event: the attempt goes on, and the thread takes the work when the attempt next lets go of the GIL
(its next call to luigid or the registry). A thread of this process's own (:func:`keep`) takes work after work, run
after run; a process that keeps none (an attempt run in the foreground), or whose threads are all busy, starts a
thread as before (:func:`start`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from nectar import forks

logger = logging.getLogger(__name__)


class Standby:
    """A thread waiting for work (:meth:`take`), which it runs, then waits for the next."""

    def __init__(self, name: str) -> None:
        self._work: Callable[[], object] | None = None
        self._given = threading.Event()
        self._lock = threading.Lock()
        #: set while the thread has no work: its last work has ended
        self.idle = threading.Event()
        self.idle.set()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def take(self, work: Callable[[], object]) -> bool:
        """Hand ``work`` to this thread (False if it has work already); returns at once."""
        with self._lock:
            if not self.idle.is_set():
                return False
            self.idle.clear()
        self._work = work
        self._given.set()
        return True

    def _serve(self) -> None:
        while True:
            self._given.wait()
            self._given.clear()
            work, self._work = self._work, None
            try:
                if work is not None:
                    work()
            except BaseException:  # as a thread's end by an exception is told: the thread itself goes on
                logger.exception("work handed to the thread %s raised", self.thread.name)
            finally:
                # not held while the thread waits for its next work: luigi's keep-alive loop holds the run's luigi
                # worker, its tasks and so their chain's classes, which outlived the run until the next was handed
                work = None
                self.idle.set()


class Started:
    """Work running on a thread (a :class:`Standby`, or one of its own): :meth:`join` waits for it to end."""

    def __init__(self, standby: Standby | None, thread: threading.Thread | None) -> None:
        self._standby, self._thread = standby, thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._standby is not None:
            self._standby.idle.wait(timeout)

    @property
    def own(self) -> bool:
        """Whether the work runs on a thread of its own (not a standby's)."""
        return self._thread is not None

    def is_alive(self) -> bool:
        if self._thread is not None:
            return self._thread.is_alive()
        return self._standby is not None and not self._standby.idle.is_set()


#: the threads an attempt starts: its lease's heartbeat (:class:`~nectar.leases.AttemptLease`), luigi's keep-alive
#: (:class:`~nectar.luigi_internals.Worker`: the process's loop of pings, :mod:`nectar.pings`, which holds its thread
#: for as long as runs come)
ATTEMPT_THREADS = 2
#: this process's standby threads, and the process they were started in (a fork's copy names its parent's threads)
_KEPT: tuple[int, list[Standby]] = (0, [])


def keep(count: int) -> None:
    """Have ``count`` standby threads in this process (those it has already are kept: started once per process)."""
    global _KEPT
    pid, kept = _KEPT
    if pid != forks.pid():
        kept = []
        _KEPT = (forks.pid(), kept)
    while len(kept) < count:
        kept.append(Standby(f"nectar-standby-{len(kept)}"))


def hand(work: Callable[[], object]) -> Started | None:
    """Run ``work`` on an idle standby thread of this process; None if it has none."""
    pid, kept = _KEPT
    if pid == forks.pid():
        for standby in kept:
            if standby.take(work):
                return Started(standby, None)
    return None


def has_idle() -> bool:
    """Whether this process keeps a standby thread that is idle now."""
    pid, kept = _KEPT
    return pid == forks.pid() and any(standby.idle.is_set() for standby in kept)


def start(work: Callable[[], object], name: str) -> Started:
    """Run ``work`` on an idle standby thread of this process, else on a new daemon thread named ``name``."""
    handed = hand(work)
    if handed is not None:
        return handed
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return Started(None, thread)
