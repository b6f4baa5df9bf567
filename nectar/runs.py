"""The run registry: every run submitted, its attempts, its state, and each step of its chain.

This module holds the models and ``RunStore``, the interface; :mod:`nectar.sqlruns` keeps the
registry in SQL (one SQLite file in the data folder by default, see :mod:`nectar.pgruns` for
PostgreSQL). At most one PENDING or RUNNING
run exists per key: a second identical submission gets the first run back.

A run's life: PENDING → (claimed: attempt n) RUNNING → DONE, or back to PENDING for attempt
n+1 after a delay when its retry policy allows, else FAILED; CANCELLED on request. An attempt
is *owned* by whoever claimed it: every later write names ``(run id, attempt)``, so a worker
that was presumed lost can never overwrite what happened after. A RUNNING attempt holds a
lease renewed by heartbeats; :meth:`RunStore.reclaim` ends attempts whose lease ran out.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nectar.config import Settings


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def active(self) -> bool:
        return self in (RunState.PENDING, RunState.RUNNING)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed run is tried again, and how long after (luigi's ``retry_count``, starlake's
    ``retries``/``retry_delay``): attempt n+1 starts ``delay * backoff**(n-1)`` seconds after attempt n failed."""

    retries: int = 0
    delay: float = 0.0
    backoff: float = 2.0

    def delay_after(self, attempt: int) -> float:
        return float(self.delay * self.backoff ** max(0, attempt - 1))


@dataclass(frozen=True)
class Run:
    """One submission of a task with its parameters."""

    id: str
    key: str
    chain_type: str
    chain: str
    task: str
    params: Mapping[str, str]
    task_id: str
    state: RunState = RunState.PENDING
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    #: ``host:pid`` of the process executing the current attempt
    worker: str | None = None
    failed_step: str | None = None
    error: str | None = None
    #: attempts started so far (the current one while RUNNING)
    attempt: int = 0
    max_attempts: int = 1
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    #: a PENDING run is not claimed before this time (the delay before a retry)
    not_before: float = 0.0
    heartbeat_at: float | None = None
    #: since when its attempts have been put back because luigid would not grant its task (None: not waiting)
    waiting_since: float | None = None

    @property
    def ref(self) -> str:
        return f"{self.chain_type}/{self.chain}/{self.task}"

    @property
    def retry_at(self) -> float | None:
        """When a failed attempt's retry may start (None unless the run waits for one)."""
        return self.not_before if self.state == RunState.PENDING and self.attempt else None

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts - 1, self.retry_delay, self.retry_backoff)

    @classmethod
    def new(
        cls,
        key: str,
        chain_type: str,
        chain: str,
        task: str,
        params: Mapping[str, str],
        task_id: str,
        policy: RetryPolicy | None = None,
    ) -> Run:
        policy = policy or RetryPolicy()
        return cls(
            uuid.uuid4().hex,
            key,
            chain_type,
            chain,
            task,
            dict(params),
            task_id,
            max_attempts=max(0, policy.retries) + 1,
            retry_delay=max(0.0, policy.delay),
            retry_backoff=max(1.0, policy.backoff),
        )


@dataclass(frozen=True)
class RunFilter:
    """Which runs :meth:`RunStore.find` answers: every field that is set must match."""

    chain_type: str | None = None
    chain: str | None = None
    task: str | None = None
    state: RunState | None = None
    #: queued at or after this unix time
    since: float | None = None
    #: queued before this unix time
    until: float | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("chain_type", self.chain_type), ("chain", self.chain), ("task", self.task)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.state is not None:
            clauses.append("state = ?")
            args.append(self.state.value)
        if self.since is not None:
            clauses.append("queued_at >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("queued_at < ?")
            args.append(self.until)
        return " AND ".join(clauses) or "TRUE", args


@dataclass(frozen=True)
class Durations:
    """How long the ended runs of one task took (from their last attempt's start to their end)."""

    #: how many took at most each bound of the buckets asked for, in their order
    within: tuple[int, ...]
    count: int
    total: float


#: the states of a step: luigi's (waiting for what it requires, running, done, failed) and CANCELLED, the state
#: every step not yet over takes, at once, when its run is cancelled
STEP_STATES = ("PENDING", "RUNNING", "DONE", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class Step:
    """One task of a run's chain, as the run's worker saw it."""

    run_id: str
    task_id: str
    task: str
    key: str | None
    #: one of :data:`STEP_STATES`
    state: str
    executed: bool = False
    error: str | None = None
    updated_at: float = field(default_factory=time.time)


class RunStore(ABC):
    """Where runs are queued, claimed, kept alive and ended."""

    @abstractmethod
    def submit(self, run: Run, max_pending: int | None = None) -> tuple[Run, bool]:
        """Queue ``run`` unless a run for its key is active; answer (the run, whether new).

        :raises QueueFull: if ``max_pending`` runs are already PENDING (an active identical run is still answered).
        """

    @abstractmethod
    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        """Start the next attempt of the oldest due PENDING run (or of ``run_id``) for ``worker``."""

    @abstractmethod
    def heartbeat(self, run_id: str, attempt: int, worker: str | None = None) -> bool:
        """Renew the lease of a RUNNING attempt; False if the attempt is no longer the caller's."""

    @abstractmethod
    def complete(self, run_id: str, attempt: int) -> bool:
        """End a RUNNING attempt as DONE; False if the attempt is no longer the caller's."""

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
        """The most recently queued run for a key."""

    @abstractmethod
    def find(self, where: RunFilter, offset: int = 0, limit: int = 50) -> tuple[list[Run], int]:
        """The runs matching ``where``, newest first, ``limit`` from ``offset``; and how many match in all."""

    @abstractmethod
    def count_by_state(self) -> dict[RunState, int]:
        """How many runs are in each state (every state present, 0 if none)."""

    @abstractmethod
    def durations(self, bounds: tuple[float, ...]) -> dict[str, Durations]:
        """By task (``<type>/<chain>/<Task>``): how long its DONE and FAILED runs took, counted within ``bounds``."""

    @abstractmethod
    def record_steps(self, steps: Sequence[Step]) -> None:
        """Record the new states of some steps, in order, in one transaction."""

    def record_step(self, step: Step) -> None:
        self.record_steps([step])

    @abstractmethod
    def steps(self, run_id: str) -> list[Step]:
        """A run's steps, the requested task last: the reverse of the order luigi discovered them, which for a
        chain is the order they run in."""

    def owns(self, run_id: str, attempt: int) -> bool:
        """Whether ``attempt`` of the run is still RUNNING: not ended, cancelled nor reclaimed (a read)."""
        current = self.get(run_id)
        return current is not None and current.state == RunState.RUNNING and current.attempt == attempt

    @abstractmethod
    def count(self, state: RunState | None = None) -> int: ...

    @abstractmethod
    def check(self) -> str:
        """Raise if the registry cannot be used; else describe it."""

    def wait_for_work(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, or sooner when a run may have become claimable."""
        time.sleep(timeout)


def open_run_store(settings: Settings) -> RunStore:
    """The registry the settings name: PostgreSQL at ``NECTAR_DATABASE_URL``, else SQLite in the data folder."""
    if settings.database_url:
        from nectar.pgruns import PostgresRunStore  # psycopg only where PostgreSQL is used

        return PostgresRunStore(settings.database_url)
    from nectar.sqlruns import SQLiteRunStore

    return SQLiteRunStore(settings.registry_path)


def jsonable_run(run: Run) -> dict[str, Any]:
    """A run as plain JSON-able values."""
    return {
        "run_id": run.id,
        "key": run.key,
        "task": run.ref,
        "params": dict(run.params),
        "task_id": run.task_id,
        "job_status": run.state.value,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "worker": run.worker,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "retry_at": run.retry_at,
        "heartbeat_at": run.heartbeat_at,
        "waiting_since": run.waiting_since,
        "failed_step": run.failed_step,
        "error": run.error,
    }
