"""One loop a process that pings luigid for each luigi worker of the process, living with the process, not with a run.

luigi's worker starts a keep-alive thread as it is entered and stops it (``Event.set``) as it exits. Run on a standby
thread (:mod:`nectar.standby`), that loop was handed over at each run's start and stopped at its end: each time an
event whose waiter woke, then waited for a core and the GIL behind the attempt's main thread, 4.5-4.7 wake-ups of that
thread a run at 2 slots, and the main thread put to sleep 0.24-0.33 times a run (round 62). Here a worker is
registered (:meth:`Pings.register`) and unregistered (:meth:`Pings.unregister`) under a lock: the loop's thread,
waiting for the next ping due, is not woken by either. It pings each worker ``interval`` after the worker was
registered and every ``interval`` after (luigi's first ping is ``ping_interval`` after its thread started, the next
each ``ping_interval`` after the last ended: never sooner than these); a worker unregistered before its ping is due is
never pinged, and :meth:`Pings.unregister` returns once a ping of its worker under way has ended, so none comes after.

The loop's thread wakes when the earliest ping it knew of is due: a worker unregistered before that wakes it once, for
nothing, then it waits for the next one's; with no worker left it waits one interval more (the last registered
worker's) for a next one (a reused process's runs come one after another), then ends, giving its standby thread
back. The next worker registered then starts it again (:meth:`Pings.serve`, a hand-over as before, once per idle
spell, not once a run).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from nectar import forks, standby
from nectar.stdlib_internals import new_event

logger = logging.getLogger(__name__)

#: the name of the thread of its own the loop runs on when no standby thread is idle
PINGS_THREAD = "nectar-pings"


class Pinged:
    """A worker registered with the loop: ``ping()`` every ``interval`` seconds, the first ``interval`` after now."""

    __slots__ = ("ping", "interval", "due", "under_way")

    def __init__(self, ping: Callable[[], object], interval: float) -> None:
        self.ping = ping
        self.interval = interval
        #: when its next ping is due (monotonic)
        self.due = time.monotonic() + interval
        #: set once its ping under way on the loop's thread has ended (None: none under way)
        self.under_way: threading.Event | None = None


class Pings:
    """The workers this process pings for, and whether a thread runs the loop that pings them."""

    def __init__(self) -> None:
        self._pid = 0
        self._workers: list[Pinged] = []
        #: whether a thread of this process runs the loop (or was handed it): a worker registered needs no hand-over
        self.serving = False
        #: when the loop's thread wakes next, unwoken (monotonic)
        self._until = float("inf")
        self._wake = new_event()  # threading's, made without its Condition's caught errors
        #: made anew in a forked child (a parent's thread may hold it at the fork)
        self._lock = forks.lock_made_anew_in_children(vars(self), "_lock")

    def _this_process(self) -> None:
        """Forget a parent's workers and loop in a forked child (its thread is not there); under the lock."""
        if self._pid != forks.pid():
            self._pid, self._workers, self.serving, self._until = forks.pid(), [], False, float("inf")
            self._wake = new_event()

    def register(self, worker: Pinged) -> bool:
        """Ping ``worker`` from now on; whether the loop runs already (else :meth:`serve` starts it). Wakes the loop's
        thread only if ``worker``'s first ping is due before it would wake (a shorter interval than the last ones)."""
        with self._lock:
            self._this_process()
            self._workers.append(worker)
            self._linger = worker.interval
            sooner = self.serving and worker.due < self._until
            serving = self.serving
        if sooner:
            self._wake.set()
        return serving

    def unregister(self, worker: Pinged) -> None:
        """Ping ``worker`` no more: returns once a ping of it under way has ended. Its thread is not woken."""
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            under_way = worker.under_way
        if under_way is not None and threading.current_thread() is not _LOOP_THREAD.get(forks.pid()):
            under_way.wait()

    def serve(self) -> None:
        """Run the loop on an idle standby thread (else a daemon thread of its own) unless a thread runs it already,
        or no worker is registered."""
        with self._lock:
            self._this_process()
            if self.serving or not self._workers:
                return
            self.serving = True
        if standby.hand(self._loop) is None:
            threading.Thread(target=self._loop, name=PINGS_THREAD, daemon=True).start()

    def _loop(self) -> None:
        _LOOP_THREAD[forks.pid()] = threading.current_thread()
        lingered = False
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    if self._pid != forks.pid():
                        return
                    due = [worker for worker in self._workers if worker.due <= now]
                    for worker in due:
                        worker.under_way = new_event()
                        worker.due = now + worker.interval
                    if self._workers:
                        lingered = False
                        self._until = min(worker.due for worker in self._workers)
                    elif lingered:
                        self.serving, self._until = False, float("inf")
                        return
                    else:  # none left: one interval more for the process's next
                        lingered = True
                        self._until = now + self._linger
                    until, wake = self._until, self._wake
                for worker in due:
                    try:
                        worker.ping()
                    except BaseException:  # as a failed ping in luigi's loop: its own record, the loop goes on
                        logger.exception("a keep-alive ping raised")
                    finally:
                        with self._lock:
                            ended, worker.under_way = worker.under_way, None
                        if ended is not None:
                            ended.set()
                if due:
                    continue
                wake.wait(max(0.0, until - time.monotonic()))
                wake.clear()
        finally:
            if _LOOP_THREAD.get(forks.pid()) is threading.current_thread():  # not a next loop's, started meanwhile
                del _LOOP_THREAD[forks.pid()]

    #: how long the loop waits for a next worker once none is left: the interval of the last one registered
    _linger = 1.0

    def is_pinged(self, worker: Pinged) -> bool:
        """Whether ``worker`` is registered and a thread runs the loop."""
        with self._lock:
            return self.serving and self._pid == forks.pid() and worker in self._workers


#: the thread that runs the loop, by process (a ping's callback on it unregisters without waiting on itself)
_LOOP_THREAD: dict[int, threading.Thread] = {}
#: the workers of this process pinged by one loop
PINGS = Pings()
