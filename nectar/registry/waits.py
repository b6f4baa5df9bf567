"""The registry's side of WAITING runs: a run whose data is absent waits in the registry, holding no worker.

An attempt that finds an external task's data (or an ack file, or a run it needs) absent ends as
WAITING without being counted; the run then waits for what ``waiting_for`` names: objects' URIs or
absolute paths, and ``run:<id>`` for a run that must be DONE first. A loop off every worker
(:mod:`nectar.waiting`) checks each due run, with backoff, and wakes it (PENDING: a worker runs it)
once everything is there, or ends it at ``wait_until`` (FAILED, or CANCELLED as a skip).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from nectar.registry.model import Run, RunState


class WaitStore(ABC):
    """WAITING runs: put to wait, found when a check is due, woken or ended."""

    @abstractmethod
    def wait(
        self,
        run_id: str,
        attempt: int,
        waiting_for: Sequence[str],
        until: float,
        next_check: float,
        reason: str,
        on_timeout: str = "fail",
    ) -> bool:
        """Put a RUNNING attempt to WAITING, not counted as an attempt, for ``waiting_for`` until ``until`` (its first
        check at ``next_check``); False if the attempt is no longer the caller's."""

    @abstractmethod
    def waiting(self, now: float, limit: int = 500) -> list[Run]:
        """WAITING runs whose next check is due at ``now``, the longest due first."""

    @abstractmethod
    def check_later(self, run_id: str, next_check: float, reason: str | None = None) -> bool:
        """A WAITING run still waits: check it again at ``next_check``; False if it no longer waits."""

    @abstractmethod
    def wake(self, run_id: str, reason: str | None = None) -> bool:
        """What a WAITING run waits for is there: it is PENDING, due now; False if it no longer waits."""

    @abstractmethod
    def end_wait(self, run_id: str, error: str, skip: bool = False, now: float | None = None) -> RunState | None:
        """A WAITING run's wait is over without its data: FAILED with ``error``, or (``skip``) CANCELLED with it and
        the fire or trigger object that made it recorded as skipped. None if it no longer waits."""
