"""The run registry's data: a run, its state and retry policy, its attempts, its steps, the filter of runs."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from nectar.registry.schema import RunStatus

F = TypeVar("F")


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    #: its data (an external task's output, an ack file, an import run) is absent: rechecked off any worker
    WAITING = "WAITING"

    @property
    def active(self) -> bool:
        return self in (RunState.PENDING, RunState.RUNNING, RunState.WAITING)


#: the 62 random bits that end a UUIDv7, after its variant
RAND_B = (1 << 62) - 1
#: random bytes each run id takes (80 bits: 12 for rand_a, 62 for rand_b, the rest dropped)
ID_RANDOM = 10
#: the largest random step (less one) between two ids one process makes in the same millisecond: 32 of their 74 bits
STEP = (1 << 32) - 1
#: a UUIDv7's version (7) and variant (0b10), in their places
VERSION_VARIANT = 0x7 << 76 | 0b10 << 62


class RandomBytes:
    """Bytes of ``os.urandom`` read :attr:`size` at a time and handed out in order, each once: a run id took one
    ``getrandom`` system call of its own (which releases the GIL). Forgotten in a forked child, which would hand out
    its parent's next bytes again (:func:`os.register_at_fork`). It keeps the last run id's value it made
    (:meth:`id_value`)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        #: the last value :meth:`id_value` answered (a child's starts from its parent's: its ids follow them too)
        self.last = 0
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self.lock = threading.Lock()  # a child's: a thread of the parent may have held the parent's as it forked
        self.buffer, self.at = b"", 0

    def _taken(self, count: int) -> bytes:
        """The next ``count`` bytes, the lock held."""
        at = self.at
        if at + count > len(self.buffer):
            self.buffer, at = os.urandom(max(self.size, count)), 0
        self.at = at + count
        return self.buffer[at : at + count]

    def take(self, count: int) -> bytes:
        with self.lock:
            return self._taken(count)

    def id_value(self, ms: int) -> int:
        """A new run id's value (:func:`time_ordered_id`) for its millisecond ``ms``: its 74 random bits taken from
        the buffer, or, where that is not above the last value answered and of the same millisecond, those of the last
        plus a random step of at most 2**32 (:func:`_after`): the ids one process makes in one millisecond increase in
        the order it makes them (RFC 9562's monotonic random, 6.2 method 3). Not the order of a key's runs: two
        processes' ids of one millisecond are in none, and a clock may step back; the registry orders a key's runs by
        the order it wrote them (:func:`~nectar.registry.schema.latest_of_key`)."""
        with self.lock:
            random = int.from_bytes(self._taken(ID_RANDOM))
            value = ms << 80 | VERSION_VARIANT | (random >> 68) << 64 | random & RAND_B
            last = self.last
            if value <= last and last >> 80 == ms:
                step = 1 + (random & STEP)
                value = last + step if (last & RAND_B) + step <= RAND_B else _after(last, step)  # else a carry
            self.last = value
            return value


def _after(last: int, step: int) -> int:
    """The UUIDv7 value ``step`` above ``last`` in its 74 random bits (rand_a then rand_b, past its version and
    variant), a carry out of them into its milliseconds."""
    bits = (last >> 80) << 74 | (last >> 64 & 0xFFF) << 62 | last & RAND_B
    bits += step
    return bits >> 74 << 80 | VERSION_VARIANT | (bits >> 62 & 0xFFF) << 64 | bits & RAND_B


#: the random part of this process's run ids
RANDOM = RandomBytes()


def time_ordered_id(now: float) -> str:
    """A new run's id for its time ``now`` (Unix seconds): a UUIDv7 (RFC 9562), in the 32 lowercase hex digits that
    uuid4's ``hex`` had: 48 bits of milliseconds first, so that a run queued later has a greater id (within one
    millisecond, one process's in the order it made them, :meth:`RandomBytes.id_value`), then 74 random bits (of
    :data:`RANDOM`). The registry's index of ids (a B-tree) takes each new one at its end, on the page the last one
    went to, where a random id took a page anywhere in it: at 20,000 runs, one seldom cached, read from the file and
    written again by the next checkpoint, at each submission. Ids made before stay valid: nothing reads a time out of
    an id, and none is made again."""
    return f"{RANDOM.id_value(int(now * 1000)):032x}"


def short_id(run_id: str) -> str:
    """The 8 hex digits of a run's id that a page shows for it: its last, random in a UUIDv7 as in a uuid4's (the
    first 8 are a UUIDv7's time, the same for every run made within ~65 s)."""
    return run_id[-8:]


def made_at_once(cls: type[F], *fields: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> F:
    """An instance of the frozen dataclass ``cls`` with every one of its fields (names and values, all, in its order;
    a later part's over an earlier's) set at once, as its ``__init__`` would set them: that sets each through
    ``object.__setattr__`` (28 calls for a run), on the hot paths of a submission and a status lookup, which make
    them this way (:meth:`Run.new`, :func:`~nectar.registry.schema.run_of`, :func:`~nectar.registry.reads.step_of`)."""
    made = object.__new__(cls)
    found = made.__dict__
    for part in fields:
        found.update(part)
    return made


#: the prefix of a ``waiting_for`` entry that names a run (its id after it) rather than an object's URI
RUN_PREFIX = "run:"


#: the most seconds a retry's delay grows to by its backoff (a day), unless its first delay is longer: with up to
#: 2**31-1 attempts, ``2.0 ** 1024`` would raise OverflowError, and the run stay RUNNING with nothing to end it
RETRY_DELAY_MOST = 24 * 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed run is tried again, and how long after (luigi's ``retry_count``, starlake's
    ``retries``/``retry_delay``): attempt n+1 starts ``delay * backoff**(n-1)`` seconds after attempt n failed, at
    most :data:`RETRY_DELAY_MOST` (or ``delay``, if longer)."""

    retries: int = 0
    delay: float = 0.0
    backoff: float = 2.0

    def delay_after(self, attempt: int) -> float:
        try:
            grown = self.delay * self.backoff ** max(0, attempt - 1)
        except OverflowError:  # a float power past ~1.8e308 raises (a product past it is inf)
            grown = math.inf
        return float(min(grown, max(self.delay, RETRY_DELAY_MOST)))


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
    #: the schedule that made it, and the fire time (unix seconds) it was made for (None: submitted by a client)
    schedule_id: str | None = None
    fire_time: float | None = None
    #: the trigger that made it, and the objects (URIs or absolute paths) it was made for (None: not a trigger's)
    trigger_id: str | None = None
    objects: tuple[str, ...] | None = None
    #: while WAITING: what it waits for (objects' URIs, or ``run:<id>`` for a run that must be DONE first), until
    #: when (unix time), and what it does then (``fail``, or ``skip``: CANCELLED, saying so, as
    #: :data:`nectar.preload.ON_TIMEOUT` names them); ``not_before`` is its next check
    waiting_for: tuple[str, ...] | None = None
    wait_until: float | None = None
    on_wait_timeout: str = "fail"

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
        schedule_id: str | None = None,
        fire_time: float | None = None,
        trigger_id: str | None = None,
        objects: tuple[str, ...] | None = None,
    ) -> Run:
        """A new PENDING run of ``task_id`` (its id and queue time now's), its fields set at once
        (:func:`made_at_once`: a submission's hot path, 6.7 -> 2.9 µs)."""
        policy = policy or RetryPolicy()
        now = time.time()
        fields = {
            "id": time_ordered_id(now),
            "key": key,
            "chain_type": chain_type,
            "chain": chain,
            "task": task,
            "params": dict(params),
            "task_id": task_id,
            "queued_at": now,
            "max_attempts": max(0, policy.retries) + 1,
            "retry_delay": max(0.0, policy.delay),
            "retry_backoff": max(1.0, policy.backoff),
            "schedule_id": schedule_id,
            "fire_time": fire_time,
            "trigger_id": trigger_id,
            "objects": tuple(objects) if objects is not None else None,
        }
        # every field in its place, as __init__ sets them, its default in those that have one, then the run's own
        return made_at_once(cls, _NEW_RUN, fields)


#: a new run's fields in :class:`Run`'s order: each one's default (of a default factory, None: :meth:`Run.new` sets it)
_NEW_RUN: dict[str, Any] = {
    each.name: None if each.default is dataclasses.MISSING else each.default for each in dataclasses.fields(Run)
}


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


@dataclass(frozen=True)
class Durations:
    """How long the ended runs of one task took (from their last attempt's start to their end)."""

    #: how many took at most each bound of :data:`~nectar.registry.counts.DURATION_BOUNDS`, in their order
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


@dataclass(frozen=True)
class Attempt:
    """One ended attempt of a run: how it ended (DONE, FAILED, CANCELLED), at which step and why, and when."""

    run_id: str
    attempt: int
    #: DONE, FAILED (the run was retried after it, or failed) or CANCELLED
    state: str
    failed_step: str | None
    error: str | None
    started_at: float | None
    ended_at: float


def lease_ran_out(
    run: Run | RunStatus, now: float, lease_timeout: float, up_for: Callable[[], float] = lambda: math.inf
) -> float | None:
    """The lease rule, the one that the attempt holding a lease, every worker that may reclaim it and every status
    read follow: a lease runs out ``lease_timeout`` seconds after its last renewal (the attempt's heartbeat, else its
    claim), counted from the registry's start when that is later: ``up_for()`` is how long the registry has been up
    (a registry that was down could take no heartbeat; asked only of a lease that looks run out). A duration, read in
    the registry's own clock: the registry's start is never compared with this node's clock (``now``), which may be
    ahead of or behind the server's. Once it has run out the attempt has lost its run, whether or not a
    worker has reclaimed it yet: :meth:`~nectar.registry.store.RunStore.heartbeat` renews it no more (so the
    fence refuses the attempt's commits from then on, a frozen process woken late included), and a worker's
    :meth:`~nectar.registry.store.RunStore.reclaim` fails the attempt per its run's retry policy.

    Answers the seconds the lease has been silent once it ran out, else None (held)."""
    silent = now - (run.heartbeat_at or run.started_at or 0.0)
    if silent > lease_timeout:
        silent = min(silent, up_for())
    return silent if silent > lease_timeout else None


def jsonable_attempt(attempt: Attempt) -> dict[str, Any]:
    """An ended attempt as plain JSON-able values (times in unix seconds, as a run's)."""
    return {
        "attempt": attempt.attempt,
        "state": attempt.state,
        "failed_step": attempt.failed_step,
        "error": attempt.error,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
    }


#: the member of a run's parameters naming, comma separated, those luigi calls private (``ParameterVisibility.PRIVATE``:
#: a password): their text is kept for the run's task, as luigi's command line gives it, and never shown (luigi keeps
#: them out of the task's id and of luigid); no parameter's name (an identifier) is spelt so
PRIVATE = "(private)"


def shown_params(params: Mapping[str, str]) -> dict[str, str]:
    """A run's parameters as they are shown: without those luigi calls private (:data:`PRIVATE`)."""
    private = params.get(PRIVATE)
    if private is None:
        return dict(params)
    hidden = {PRIVATE, *private.split(",")}
    return {name: text for name, text in params.items() if name not in hidden}


def jsonable_run(run: Run) -> dict[str, Any]:
    """A run as plain JSON-able values."""
    return {
        "run_id": run.id,
        "key": run.key,
        "task": run.ref,
        "params": shown_params(run.params),
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
        "schedule_id": run.schedule_id,
        "fire_time": iso_utc(run.fire_time),
        "trigger_id": run.trigger_id,
        "objects": list(run.objects) if run.objects is not None else None,
        "waiting_for": list(run.waiting_for) if run.waiting_for is not None else None,
        "wait_until": iso_utc(run.wait_until),
    }


def waited(seconds: float) -> str:
    """A wait's length as a person writes it: ``1h0m``, ``2m5s``, ``2s``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def iso_utc(t: float | None) -> str | None:
    """A unix time as ISO 8601 in UTC, to the second (``2026-03-29T01:00:00+00:00``); None for None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds")
