"""The run registry's interface: where runs are queued, claimed, kept alive and ended.

At most one PENDING or RUNNING run exists per key: a second identical submission gets the first
run back. A run's life: PENDING → (claimed: attempt n) RUNNING → DONE, or back to PENDING for
attempt n+1 after a delay when its retry policy allows, else FAILED; CANCELLED on request. An
attempt is *owned* by whoever claimed it: every later write names ``(run id, attempt)``, so a
worker that was presumed lost can never overwrite what happened after. A RUNNING attempt holds a
lease renewed by heartbeats; :meth:`RunStore.reclaim` ends attempts whose lease ran out.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Self

from nectar import wakeup
from nectar.registry.model import Attempt, Durations, Run, RunFilter, RunState, Step
from nectar.registry.schedules import ScheduleStore
from nectar.registry.triggers import TriggerStore
from nectar.registry.waits import WaitStore

if TYPE_CHECKING:
    from nectar.registry.schema import RunStatus, StepStatus


class RunStore(ScheduleStore, TriggerStore, WaitStore):
    """Where runs are queued, claimed, kept alive and ended; what schedules fired (:class:`ScheduleStore`), what
    triggers claimed (:class:`TriggerStore`), and the runs that wait for data (:class:`WaitStore`)."""

    def close(self) -> None:
        """End this process's use of the registry: what it holds open (connections, descriptors), which a later use
        opens again. By default nothing (a dialect that holds something closes it)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @abstractmethod
    def submit(self, run: Run, max_pending: int | None = None) -> tuple[Run, bool]:
        """Queue ``run`` unless a run for its key is active; answer (the run, whether new).

        :raises QueueFull: if ``max_pending`` runs are already PENDING (an active identical run is still answered).
        """

    @abstractmethod
    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        """Start the next attempt of the oldest due PENDING run (or of ``run_id``) for ``worker``."""

    @abstractmethod
    def next_due(self) -> float | None:
        """When a PENDING run is due, read without the write lock, in one query: if one is due now (one a
        :meth:`claim` would take), a time not after now (the ``not_before`` of such a run, not necessarily the
        earliest); else that of the run due first; None: none is PENDING."""

    @abstractmethod
    def heartbeat(
        self, run_id: str, attempt: int, worker: str | None = None, lease_timeout: float | None = None
    ) -> bool:
        """Renew the lease of a RUNNING attempt; False if the attempt is no longer the caller's: another owns its run,
        or, with ``lease_timeout``, its lease has run out (:func:`~nectar.registry.model.lease_ran_out`), reclaimed
        yet or not."""

    @abstractmethod
    def lease_silence(self, run: Run | RunStatus, lease_timeout: float) -> float | None:
        """How long the RUNNING attempt of ``run`` (as read) has been silent, once its lease ran out by the rule the
        heartbeat and the reclaim follow (:func:`~nectar.registry.model.lease_ran_out`, the registry's start
        included); None while it is held. A read: nothing is changed."""

    @abstractmethod
    def complete(self, run_id: str, attempt: int, steps: Sequence[Step] = ()) -> bool:
        """End a RUNNING attempt as DONE; False if the attempt is no longer the caller's. ``steps``, the attempt's
        last step changes, are recorded first in the same transaction (as :meth:`record_steps` records them, whether
        the attempt is still the caller's or not): one commit for both."""

    @abstractmethod
    def fail(
        self, run_id: str, attempt: int, failed_step: str | None, error: str, retryable: bool = True
    ) -> RunState | None:
        """End a RUNNING attempt as failed: PENDING again if ``retryable`` and its policy allows a retry, else FAILED.

        A failure no retry can cure (a chain that does not import, a missing bucket) is not ``retryable``.
        Answers the run's new state, or None if the attempt is no longer the caller's.
        """

    @abstractmethod
    def requeue(
        self, run_id: str, attempt: int, delay: float = 0.0, reason: str | None = None, waiting: bool = False
    ) -> bool:
        """Put a RUNNING attempt back in the queue without counting it (its worker stopped, or it must wait).

        ``waiting``: luigid did not grant it; the run's ``waiting_since`` keeps when its wait began (else cleared).
        """

    @abstractmethod
    def requeue_unbegun(self, worker: str) -> list[str]:
        """Put back in the queue, uncounted, every RUNNING run claimed in ``worker``'s name (a process's name as an
        attempt's holder): asked by that process itself, which knows it began none of them (its worker died between
        a claim in its name and the attempt's start). The ids of the runs put back."""

    @abstractmethod
    def reclaim(self, lease_timeout: float, dead: Callable[[str], bool] | None = None) -> list[Run]:
        """Fail (per policy) every RUNNING attempt whose lease ran out or whose ``worker`` is ``dead``.

        Answers those runs as they were, so the caller can release what their workers held.
        """

    @abstractmethod
    def cancel(self, run_id: str, reason: str = "cancelled by request") -> tuple[Run, Run]:
        """Cancel a PENDING or RUNNING run; answer (the run before, the run after).

        :raises RunNotFound: unknown id. :raises RunFinished: the run has already ended.
        """

    @abstractmethod
    def get(self, run_id: str) -> Run | None: ...

    @abstractmethod
    def latest(self, key: str) -> Run | None:
        """A key's latest run: its active run if it has one (one a key), else its ended run the registry wrote last
        (whatever the clocks that queued them say; a retried run is written once, its attempts one row)."""

    @abstractmethod
    def latest_status(self, key: str) -> tuple[RunStatus | None, list[StepStatus]]:
        """:meth:`latest` as a status answers it (what its answer reads of the run) and its :meth:`steps`, read at
        once (a status lookup's one read of the registry)."""

    @abstractmethod
    def find(self, where: RunFilter, offset: int = 0, limit: int = 50) -> tuple[list[Run], int]:
        """The runs matching ``where``, newest first (by queue time, of one queue time the run written last first),
        ``limit`` from ``offset``; and how many match in all."""

    @abstractmethod
    def count_by_state(self) -> dict[RunState, int]:
        """How many runs are in each state (every state present, 0 if none)."""

    @abstractmethod
    def durations(self) -> dict[str, Durations]:
        """By task (``<type>/<chain>/<Task>``): how long its DONE and FAILED runs took, counted within
        :data:`~nectar.registry.counts.DURATION_BOUNDS`."""

    @abstractmethod
    def record_steps(self, steps: Sequence[Step], attempt: int | None = None) -> bool:
        """Record the new states of some steps, in order, in one transaction, unless their run was cancelled or is not
        there (no row of a run that was never queued).

        With ``attempt``, the attempt that tells them: each is written only while that attempt owns its run (RUNNING,
        not reclaimed nor cancelled), and False says it does not (none written from the first refused on): a lost
        attempt's late news never overwrites its successor's steps, and its answer is the fence's."""

    @abstractmethod
    def fail_running_steps(self, run: Run, error: str) -> int:
        """Mark ``run``'s RUNNING steps FAILED with ``error``, as they were left by its attempt (``run`` as that
        attempt's claim made it) once it ended (its process died, it was reclaimed, requeued, it failed): only while
        no later claim has taken the run (a requeued run's next attempt has the same number: its claim is told by its
        start) and it was not cancelled, so that the steps a later attempt has started since are left as they are.
        How many were."""

    def record_step(self, step: Step) -> None:
        self.record_steps([step])

    @abstractmethod
    def steps(self, run_id: str) -> list[Step]:
        """A run's steps, the requested task last: the reverse of the order luigi discovered them, which for a
        chain is the order they run in."""

    @abstractmethod
    def attempts(self, run_id: str) -> list[Attempt]:
        """How each ended attempt of a run ended (its state, failed step and error), the first first."""

    def owns(self, run_id: str, attempt: int) -> bool:
        """Whether ``attempt`` of the run is still RUNNING: not ended, cancelled nor reclaimed (a read)."""
        current = self.get(run_id)
        return current is not None and current.state == RunState.RUNNING and current.attempt == attempt

    @abstractmethod
    def count(self, state: RunState | None = None) -> int:
        """How many runs (in ``state``), counted from the runs themselves: a scan, the truth that the count the
        database keeps (:meth:`queued`, :meth:`count_by_state`: the queue's bound and the metrics) is checked against;
        on no request's path."""

    @abstractmethod
    def check(self) -> str:
        """Raise if the registry cannot be used; else describe it."""

    def clock_skew(self) -> tuple[float, float] | None:
        """How far this node's clock is ahead of the registry's (seconds, behind if negative), and within how much
        that is known (half the read's round trip); None where the registry has no clock of its own (a file that the
        processes of one host open: theirs)."""
        return None

    def wait_for_work(self, timeout: float, also: Sequence[int] = ()) -> bool:
        """Return after ``timeout`` seconds, sooner when a run may have become claimable, or as soon as one of the
        file descriptors ``also`` is readable (a worker's children and spares: :mod:`nectar.wakeup`). Whether a run
        may have been queued since the last wait (False: ``also`` woke it, or the timeout passed, and the store would
        have been told of a run queued); a store that is told of none answers True."""
        wakeup.readable(also, timeout)
        return True
