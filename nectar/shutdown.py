"""How a worker stops: the drain, and the one line it says about each step.

The first SIGTERM (SIGINT, SIGHUP) starts a drain of ``drain_grace`` seconds: no new claim, running
attempts may finish. A second one, or the death of the ``nectar serve`` that started the worker,
ends it at once; what still runs is then interrupted and requeued, uncounted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from nectar import lifeline

logger = logging.getLogger("nectar.executor")


def running_runs(run_ids: Sequence[str]) -> str:
    """``2 running runs (id, id)``."""
    return f"{len(run_ids)} running run{'s' if len(run_ids) != 1 else ''} ({', '.join(run_ids)})"


class Shutdown:
    """A worker's stop requests (noted by a signal handler) and the lines that tell what each one means."""

    def __init__(self, drain_grace: float) -> None:
        self.drain_grace = drain_grace
        #: when the drain ends (None: no stop was asked)
        self.until: float | None = None
        #: the last request does not wait for running attempts
        self.now = False
        self._requests = 0
        self._announced = 0

    def request(self, *_: Any) -> None:
        """A signal handler: the first request drains, the next (or one after the supervisor died) interrupts."""
        drain = self.until is None and self.drain_grace > 0 and not lifeline.supervisor_gone()
        self.until = time.monotonic() + self.drain_grace if drain else time.monotonic()
        self.now = not drain
        self._requests += 1

    @property
    def asked(self) -> bool:
        return self.until is not None

    def draining(self) -> bool:
        """Whether the worker still lets its running attempts finish."""
        return self.until is None or time.monotonic() < self.until

    def announce(self, run_ids: Sequence[str]) -> None:
        """One line per request not yet told: what the worker now waits for, and for how long."""
        if self._announced == self._requests or self.until is None:
            return
        self._announced = self._requests
        if not run_ids:
            logger.info("stopping: no run is running")
        elif not self.now:
            logger.info(
                "stopping: waiting up to %.0f s for %s to finish; Ctrl-C (or SIGTERM) again to interrupt them now",
                *(self.drain_grace, running_runs(run_ids)),
            )
        else:
            why = "nectar serve is gone" if lifeline.supervisor_gone() else "asked again"
            logger.warning("stopping (%s): interrupting %s now; they go back to the queue", why, running_runs(run_ids))

    def interrupting(self, run_ids: Sequence[str]) -> None:
        """The drain is over with ``run_ids`` still running: say so (unless the request already did)."""
        if run_ids and not self.now:
            logger.warning(
                "stopping: the drain is over after %.0f s: interrupting %s now; they go back to the queue",
                *(self.drain_grace, running_runs(run_ids)),
            )
