"""How long a benchmark waits before it calls a wait a hang: a multiple of what the run measured, never a constant.

Every wait of a benchmark ends a hang only, and must not end a slow machine's wait: on a machine several times
faster or slower than the one a constant happened to fit, or under a load several times higher, the work waited on
takes several times as long, and so does what the run measured of it. So a wait's bound is :data:`HANG` times a
duration measured in the same run: the work's own (the first batch's time per run, a raw build of the same size, the
warm-up's), never below the floor, :data:`HANG` times the time the run's first process of the service took from its
start to its first answer (:meth:`Patience.started`): nothing a benchmark waits on is less work than a process's start
and first answer, and a stall of the machine (swap, a burst of others' load) lasts as long for a short wait as for a
long one, so a wait of ~4 ms of work is not bounded at 200 ms.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from harness import waitfor

#: a wait ends, as a hang, past this many times the duration it is sized from: tens of times what the work took, so
#: that only a hang, not a slower moment of the same machine, reaches it
HANG = 50


class Patience:
    """The bounds of one cluster's waits: :data:`HANG` times a measured duration, at least :data:`HANG` times the
    floor (:attr:`floor`, what a process of the service took to start and answer)."""

    def __init__(self) -> None:
        #: seconds the slowest start measured so far took, from the process's start to its first answer (0 before)
        self.floor = 0.0
        self.floor_of = "nothing yet"
        #: the slowest of each work noted, in seconds (:meth:`note`)
        self.noted: dict[str, float] = {}

    def note(self, of: str, seconds: float) -> None:
        """The work ``of`` took ``seconds`` here: :meth:`longest` answers the slowest noted of it."""
        self.noted[of] = max(seconds, self.noted.get(of, 0.0))

    def longest(self, of: str) -> float:
        """The most seconds the work ``of`` took as noted so far (0: none noted yet, the floor bounds its wait)."""
        return self.noted.get(of, 0.0)

    def started(self, seconds: float, what: str) -> None:
        """A process of the service started and answered in ``seconds``: the floor, if it is the slowest yet."""
        if seconds > self.floor:
            self.floor, self.floor_of = seconds, what

    def bound(self, measured: float = 0.0) -> float:
        """Seconds a wait sized from ``measured`` (seconds the run measured of the same work) may last. Asked before
        any start was measured (a process of the benchmark's own is the cluster's first), the floor is measured
        first: a Python process started to import luigi, as each process of the service does first."""
        if self.floor <= 0:
            self.started(interpreter_start(), "a Python process importing luigi")
        return HANG * max(measured, self.floor)

    def basis(self, measured: float = 0.0, of: str = "") -> str:
        """How :meth:`bound` sized a wait, as an error says it."""
        if measured > self.floor:
            return f"{HANG} × {of} ({measured:.3f} s)"
        return f"{HANG} × {self.floor_of}'s start ({self.floor:.3f} s), more than {of or 'what it waits for'}"

    def wait(
        self, predicate: Callable[[], Any], what: str, measured: float = 0.0, of: str = "", interval: float = 0.05
    ) -> Any:
        """``predicate()`` once true, polled every ``interval``; an error past :meth:`bound` that names what was
        awaited, for how long and from what that was sized."""
        return waitfor(predicate, self.bound(measured), f"{what} ({self.basis(measured, of)})", interval)


def interpreter_start() -> float:
    """Seconds this machine takes now to start a Python process that imports luigi and exits."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import luigi.worker"], check=True)
    return time.perf_counter() - began
