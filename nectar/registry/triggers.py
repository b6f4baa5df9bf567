"""The registry's side of data triggers: their rows, and each object claimed once, with the run it made.

An object is claimed by inserting its row, keyed by (trigger, key, version), in the same transaction
that queues its run and moves the trigger's cursor: however many processes poll a trigger, and
whenever one of them is killed, each object becomes one run (or one recorded skip) or nothing yet,
never two. The trigger's row is locked for that transaction (claims of one trigger follow each
other), and the claim is refused if the definition changed meanwhile (``version``) or the trigger
was paused: the machinery of a schedule's fire (:mod:`nectar.registry.schedules`), for objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nectar.registry.schedules import FireOutcome
from nectar.triggers.model import TriggerObject, TriggerRecord, TriggerSpec


@dataclass(frozen=True)
class Seen:
    """An object a listing found: its key (the listing's, in the cursor's space), version and last change."""

    key: str
    version: str
    modified: float | None = None


@dataclass(frozen=True)
class Claim:
    """What a claim of some objects came to: the state of the objects it claimed (``queued``, ``done``,
    ``skipped``), ``exists`` if another process had claimed them all, ``stale`` if the trigger changed or was
    paused, ``full`` if their runs did not fit in the run queue (left unclaimed, ``reason`` says why); and the run
    queued or joined."""

    state: str
    run_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TriggerCounts:
    """One trigger's objects and runs so far."""

    objects: int = 0
    runs: int = 0
    skipped: int = 0
    #: objects whose run has not ended yet (queued, waiting or running)
    waiting: int = 0


class TriggerStore(ABC):
    """Triggers' rows and the objects they claimed."""

    @abstractmethod
    def triggers(self) -> list[TriggerRecord]:
        """Every trigger with a row: made over HTTP, or declared in a chain file and seen by a trigger loop."""

    @abstractmethod
    def trigger(self, trigger_id: str) -> TriggerRecord | None: ...

    @abstractmethod
    def add_trigger(self, trigger: TriggerRecord) -> bool:
        """Insert a trigger; False if its id is taken."""

    @abstractmethod
    def change_trigger(
        self, trigger_id: str, now: float, spec: TriggerSpec | None = None, paused: bool | None = None
    ) -> TriggerRecord | None:
        """Change a trigger's definition (a new version) or pause it. None if there is no such trigger."""

    @abstractmethod
    def remove_trigger(self, trigger_id: str) -> bool:
        """Delete a trigger (its claimed objects and runs stay); False if there was none."""

    @abstractmethod
    def sync_declared_triggers(
        self, declared: Sequence[tuple[str, TriggerSpec]], kept: Sequence[str], now: float
    ) -> bool:
        """Make the rows of file triggers match ``declared`` (new ones not started: their first poll sets their
        cursor), keeping those of the chains ``kept`` (files that do not import now). True if anything changed."""

    @abstractmethod
    def start_trigger(self, trigger_id: str, version: int, cursor: str) -> bool:
        """Set the cursor of a trigger not started yet; False if it had started (another process did) or changed."""

    @abstractmethod
    def claim_objects(
        self,
        trigger_id: str,
        version: int,
        objects: Sequence[Seen],
        outcome: Callable[[Sequence[Seen]], FireOutcome],
        now: float,
        max_pending: int | None = None,
    ) -> Claim:
        """Claim those of ``objects`` no process claimed yet and make them what ``outcome`` (called with them, under
        the trigger's lock) says: one run for them all, their output already there, or a skip. Moves the cursor to
        the last of ``objects`` (all of them are dealt with, here or before), unless the trigger has not started (no
        cursor: its first poll sets it, :meth:`start_trigger`). With ``max_pending`` runs queued
        (PENDING) and runs to queue that join no active run, none is claimed and the cursor stays (``full``): an
        object is not lost while the queue is full, a later poll claims it."""

    @abstractmethod
    def polled(self, trigger_id: str, now: float, error: str | None, cursor: str | None = None) -> None:
        """Record a trigger's poll: when, what its listing failed with (None: it did not), and the cursor reached
        when nothing was claimed (the objects its glob passed over)."""

    @abstractmethod
    def trigger_objects(self, trigger_id: str, limit: int = 50) -> list[TriggerObject]:
        """A trigger's claimed objects, the latest claimed first."""

    @abstractmethod
    def trigger_counts(self, trigger_id: str | None = None) -> dict[str, TriggerCounts]:
        """Each trigger's objects, runs, skips and objects whose run has not ended (only ``trigger_id``'s, if given)."""

    @abstractmethod
    def trigger_runs(self) -> int:
        """How many runs every trigger made or joined (a run joined by two triggers counts for each), as the
        database counts them: the sum of :meth:`trigger_counts`' runs, without a scan."""

    @abstractmethod
    def object_counts(self) -> dict[str, int]:
        """How many claimed objects are in each state, every trigger together (as the database counts them)."""

    @abstractmethod
    def object_lags(self) -> tuple[tuple[int, ...], int, float]:
        """Of the claimed objects that queued a run and whose change time is known: how many were claimed within
        each bound of :data:`~nectar.registry.fire_counts.DETECTION_BOUNDS` (seconds after their change), how many
        in all, and their total lag."""
