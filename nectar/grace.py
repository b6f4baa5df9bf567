"""The grace an interrupted attempt gets to end on its own: seconds it could use, not seconds of the wall clock.

An attempt told to stop (its worker stopping, its run no longer its own, its lease lost) records that it was
interrupted before it exits; one that has not ended :data:`INTERRUPT_GRACE` seconds later has its process group
killed. Those seconds are counted the way the attempt lived them (:class:`Grace`): a second it waited for a CPU
(a loaded machine: its process's run-queue wait, ``/proc/<pid>/schedstat``) or spent stopped (SIGSTOP: its state in
``/proc/<pid>/stat``) is not counted; a second it ran or slept (its own cleanup waiting on a file, a socket, a
``sleep``) is. So a busy box does not kill an attempt mid-cleanup, and one that never gets the CPU, or stays
stopped, is still killed :data:`GRACE_BACKSTOP` seconds of the wall clock after it was told. Where ``/proc`` does
not say (another system, the process gone), every second counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)
#: seconds an interrupted attempt gets to end on its own (seconds it could use: :class:`Grace`) before its process
#: group is killed
INTERRUPT_GRACE = 5.0
#: seconds of the wall clock after which an interrupted attempt is killed however few of them it could use
GRACE_BACKSTOP = 12 * INTERRUPT_GRACE
#: the kernel's states of a process stopped by a signal, or by a tracer
STOPPED = ("T", "t")


def run_queue_wait(pid: int) -> float | None:
    """Seconds the main thread of ``pid`` has waited for a CPU while it could run (its run-queue delay), or None where
    the kernel does not say (``/proc/<pid>/schedstat``: its time on a CPU, its time waiting for one, in ns)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP, or a tracer): its state in ``/proc/<pid>/stat`` (False where unknown)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in STOPPED
    except (OSError, IndexError):
        return False


class Grace:
    """The grace of the attempt whose process is ``pid`` (this process's own: :func:`os.getpid`), from now.

    Each :meth:`over` counts the seconds since the one before (``clock``) less those the attempt waited for a CPU,
    none when it is seen stopped, nor when the look before saw it stopped (when it was continued in between is
    unknown: it gets up to one look's interval more); the grace is over once ``seconds`` were counted, or ``backstop``
    seconds of the clock passed. Its process stopped between two looks and continued is seen running: ask often (a
    worker's poll) for a stop to be seen; its own process cannot see itself stopped.
    """

    def __init__(
        self,
        pid: int,
        seconds: float = INTERRUPT_GRACE,
        backstop: float = GRACE_BACKSTOP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid, self.seconds, self.backstop, self._clock = pid, seconds, backstop, clock
        self._began = self._seen = clock()
        self._waited = run_queue_wait(pid)
        #: whether the last look (or the start) saw the process stopped
        self._halted = stopped(pid)
        #: seconds of the grace used so far
        self.used = 0.0
        self._said = False

    def over(self) -> bool:
        """Whether the grace is over (counted up to now)."""
        now, waited, halted = self._clock(), run_queue_wait(self.pid), stopped(self.pid)
        if not halted and not self._halted:
            denied = waited - self._waited if waited is not None and self._waited is not None else 0.0
            self.used += max(0.0, now - self._seen - denied)
        self._seen, self._waited, self._halted = now, waited, halted
        if self.used >= self.seconds or now - self._began >= self.backstop:
            return True
        if not self._said and now - self._began >= self.seconds:
            self._said = True
            logger.warning(
                "interrupted attempt %d used %.1f s of its %g s grace in %.1f s (waiting for a CPU, or stopped): it"
                " is killed when it used them, or %g s after it was interrupted",
                *(self.pid, self.used, self.seconds, now - self._began, self.backstop),
            )
        return False

    def ended(self, wait: Callable[[float], bool]) -> bool:
        """Wait until the attempt ended (True) or its grace is over (False); ``wait(seconds)`` waits at most that long
        for it to end and says whether it did."""
        while not wait(self.left()):
            if self.over():
                return False
        return True

    def left(self) -> float:
        """Seconds of the grace not used yet (the least time before it can be over)."""
        return max(0.0, self.seconds - self.used)
