"""The registry's side of schedules: their rows, and each fire time claimed once, with the run it made.

A fire is claimed by inserting its row, keyed by (schedule, fire time), in the same transaction
that queues its run and moves the schedule's cursor: however many processes fire schedules, and
whenever one of them is killed, each fire time becomes one run (or one recorded skip) or nothing
yet, never two. The schedule's row is locked for that transaction, so its ``max_active`` holds
across processes, and the fire is refused if the definition changed meanwhile (``version``): a
fire is made by the old definition or the new one, never by both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from nectar.registry.model import Run
from nectar.schedules.model import Fire, ScheduleRecord, ScheduleSpec


@dataclass(frozen=True)
class FireOutcome:
    """What a fire should become, as its scheduler prepared it: a run to queue, its output already there
    (neither set), or a skip with its reason; and a run to queue before it (``first``: a pre-load's import run,
    which ``run``, WAITING, waits for)."""

    run: Run | None = None
    skip: str | None = None
    first: Run | None = None


class ScheduleStore(ABC):
    """Schedules' rows and their fires."""

    @abstractmethod
    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule with a row: made over HTTP, or declared in a chain file and seen by a scheduler."""

    @abstractmethod
    def schedule(self, schedule_id: str) -> ScheduleRecord | None: ...

    @abstractmethod
    def schedules_of(self, schedule_ids: Collection[str]) -> dict[str, ScheduleRecord]:
        """The rows of ``schedule_ids`` that exist, by id, in one read (the schedules a pass of the loop fires)."""

    @abstractmethod
    def schedule_changes(self) -> int:
        """A number that changes whenever a schedule is added, changed, paused or removed (a cheap read)."""

    @abstractmethod
    def add_schedule(self, schedule: ScheduleRecord) -> bool:
        """Insert a schedule; False if its id is taken."""

    @abstractmethod
    def change_schedule(
        self, schedule_id: str, now: float, spec: ScheduleSpec | None = None, paused: bool | None = None
    ) -> ScheduleRecord | None:
        """Change a schedule's definition (a new version) or pause it; resumed, it fires from ``now`` on (the fires
        it had while paused are not missed ones). None if there is no such schedule."""

    @abstractmethod
    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule and its held fires (its past fires and runs stay); False if there was none."""

    @abstractmethod
    def sync_declared(self, declared: Sequence[tuple[str, ScheduleSpec]], kept: Sequence[str], now: float) -> bool:
        """Make the rows of file schedules match ``declared``: new ones start from ``now``, changed ones get a new
        version, the others are removed, but those of the chains ``kept`` (``<type>/<chain>``: files that do not
        import now, whose schedules are not known). True if anything changed."""

    @abstractmethod
    def fire(
        self,
        schedule_id: str,
        version: int,
        fire_time: float,
        outcome: FireOutcome,
        cap: int | None = None,
        hold: bool = True,
        cursor_to: float | None = None,
        now: float | None = None,
        max_pending: int | None = None,
    ) -> str:
        """Claim a fire time and make it what ``outcome`` says, unless another process did (``"exists"``) or the
        definition is no longer ``version`` or the schedule was paused (``"stale"``). With ``cap`` active runs of
        the schedule, a run waits (``hold``: ``"held"``) or is skipped; with ``max_pending`` runs queued (PENDING),
        a run that joins no active run of its key is skipped, the reason said. Moves the cursor to the fire time (or
        ``cursor_to``). ``now``: the firing loop's clock, when the fire (and its run's queueing) is recorded.
        Answers the fire's state: queued, done, skipped, held; or exists, stale."""

    @abstractmethod
    def release(
        self,
        schedule_id: str,
        version: int,
        fire_time: float,
        outcome: FireOutcome,
        cap: int | None,
        now: float | None = None,
        max_pending: int | None = None,
    ) -> str:
        """Make a held fire what ``outcome`` says if fewer than ``cap`` runs of its schedule are active and fewer
        than ``max_pending`` runs are queued (else it stays ``"held"``); ``"exists"`` if it is no longer held,
        ``"stale"`` if the definition changed. ``now`` as for :meth:`fire`."""

    @abstractmethod
    def hold(self, schedule_id: str, version: int, fire_times: Sequence[float], backfill_id: str) -> list[float]:
        """Hold the fire times no fire was made for yet (a backfill); answer those held."""

    @abstractmethod
    def held(self, limit: int = 100) -> dict[str, list[tuple[float, bool]]]:
        """Held fire times by schedule, oldest first, at most ``limit`` per schedule; each with whether a backfill
        held it."""

    @abstractmethod
    def fires(self, schedule_id: str, limit: int = 50, backfill_id: str | None = None) -> list[Fire]:
        """A schedule's fires, newest first (those of one backfill, if given)."""

    @abstractmethod
    def last_fires(self) -> dict[str, Fire]:
        """The latest fire of each schedule."""

    @abstractmethod
    def fire_counts(self) -> dict[str, int]:
        """How many fires are in each state, every schedule together (as the database counts them: no scan)."""

    @abstractmethod
    def fire_lags(self) -> tuple[tuple[int, ...], int, float]:
        """Of the fires that queued a run: how many did within each bound of
        :data:`~nectar.registry.fire_counts.LAG_BOUNDS` (seconds after the fire time), how many in all, and their
        total lag."""
