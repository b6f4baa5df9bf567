"""Every schedule, from chain files and from the API, as one list: read, made, changed, paused, removed, backfilled.

:class:`ScheduleBook` is what the HTTP API, the CLI and the firing loop (:mod:`nectar.schedules.loop`)
share: the same checks for a schedule whatever its source, the same view of it, and :meth:`prepare`,
which turns a fire time into the run it makes (an ordinary run of the task: same key, same dedupe).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from nectar.declarations import Declared, PrivateNames, declared_in
from nectar.errors import InvalidParameters, InvalidTask, NectarError, NotFound, ScheduleConflict, ScheduleNotFound
from nectar.preload import Moment
from nectar.registry import Run
from nectar.registry.schedules import FireOutcome
from nectar.schedules.declared import check_spec, sample_values
from nectar.schedules.model import MAX_SPAN_S, Fire, ScheduleRecord, ScheduleSpec, moves

if TYPE_CHECKING:
    from nectar.catalog.model import ChainInfo
    from nectar.service import Nectar

#: fire times one backfill may make
MAX_BACKFILL = 10_000
#: fields a schedule takes when it is made but that a change cannot edit, and why
ONLY_AT_CREATION = {"start": "only when a schedule is made: a resumed one fires from then on"}


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as every listing shows it, whatever its source."""

    id: str
    source: str
    spec: ScheduleSpec
    paused: bool
    next_fires: tuple[float, ...]
    last_fire: Fire | None
    last_run: Run | None
    created_at: float | None
    updated_at: float | None
    #: where a file schedule is declared: ``<type>/<file>`` in the chains folder
    path: str | None = None
    #: its fixed parameters whose values are never shown: those luigi calls private (:class:`PrivateNames`)
    hidden: frozenset[str] = frozenset()
    #: why a file schedule is not fired now: its chain file does not import (the file's error, as ``/api/chains``)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        timing = self.spec.timing
        definition = self.spec.definition()
        last = None
        if self.last_fire is not None:
            last = {
                "fire_time": timing.iso(self.last_fire.fire_time),
                "state": self.last_fire.state,
                "reason": self.last_fire.reason,
                "run_id": self.last_fire.run_id,
                "job_status": self.last_run.state.value if self.last_run else None,
            }
        return {
            "id": self.id,
            "source": self.source,
            **definition,
            "params": PrivateNames.shown(definition["params"], self.hidden),
            "paused": self.paused,
            "next_fires": [timing.iso(t) for t in self.next_fires],
            "last_fire": last,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "path": self.path,
            "error": self.error,
        }


@dataclass(frozen=True)
class Backfill:
    """What a backfill found and did at once; the loop queues the rest as runs end (``max_active``)."""

    id: str
    schedule_id: str
    fire_times: tuple[float, ...]
    #: fire times that already had a fire (made by the schedule or an earlier backfill), but a skipped one
    existing: int
    fires: tuple[Fire, ...]


def parse_time(name: str, text: Any, zone: str, whole_day: bool = False) -> float:
    """An ISO 8601 date or date-time (without an offset: in ``zone``) as unix seconds; 422 naming ``name``.

    With ``whole_day``, a date alone is the last instant of that day (a range's end: ``end=2026-03-31``
    takes in the 31st), else its first."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise InvalidParameters({name: [f"not an ISO 8601 date or date-time: {text!r}"]}) from None
    if whole_day and _is_date(str(text)):
        moment += timedelta(days=1, microseconds=-1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.timestamp()


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


class ScheduleBook:
    """The schedules of one service: files (through the catalog) and the registry together."""

    def __init__(self, nectar: Nectar, clock: Callable[[], float] = time.time) -> None:
        self.nectar = nectar
        self.clock = clock
        self.private = PrivateNames(nectar.catalog)
        #: (the registry's change counter, the files' schedules, the failing chains) when rows and files last matched
        self._synced: tuple[Any, ...] | None = None

    @property
    def runs(self) -> Any:
        return self.nectar.runs

    @property
    def max_queue(self) -> int:
        """Runs queued (PENDING) at most: a fire beyond is skipped, a held fire stays held (``NECTAR_MAX_QUEUE``)."""
        return int(self.nectar.settings.max_queue)

    # --- reads ---

    def declared(self) -> tuple[dict[str, tuple[Declared[ScheduleSpec], str]], list[str]]:
        """The file schedules (with the file declaring each), and the chains whose files do not import now."""
        return declared_in(self.nectar.chains(), lambda info: info.schedules)

    @staticmethod
    def _as_declared(
        declared: Mapping[str, tuple[Declared[ScheduleSpec], str]], rows: list[ScheduleRecord]
    ) -> dict[str, ScheduleRecord]:
        """The registry's rows by the id the files give them now: a row whose schedule moved in its task's list
        (:func:`~nectar.schedules.model.moves`) is shown at its new place before a sync moves it there."""
        records = {record.id: record for record in rows}
        stored = {record.id: record.spec.text() for record in rows if record.source == "file"}
        moving = moves(stored, {sid: found.spec.text() for sid, (found, _) in declared.items()})
        if not moving:
            return records
        taken = set(moving) | set(moving.values())
        placed = {sid: record for sid, record in records.items() if sid not in taken}
        placed.update({new: records[old] for old, new in moving.items()})
        return placed

    def broken(self) -> dict[str, ChainInfo]:
        """The chains whose files do not import now, by ``<type>/<chain>``: their schedules' rows are kept (with
        their pause and cursor) and listed from the registry, with the file's error, until the file imports again."""
        return {info.ref: info for info in self.nectar.chains() if info.import_failed}

    def _kept_view(self, record: ScheduleRecord, last: Fire | None, broken: Mapping[str, ChainInfo]) -> ScheduleView:
        info = broken[_chain_of(record)]
        error = f"its chain does not import: {info.error}"
        return self._view(record.id, record.spec, "file", record, last, str(info.path), error)

    def _is_kept(self, record: ScheduleRecord | None, broken: Mapping[str, ChainInfo]) -> bool:
        return record is not None and record.source == "file" and _chain_of(record) in broken

    def views(self) -> list[ScheduleView]:
        """Every schedule: the files' (as the catalog reads them now; a chain's that does not import, as the registry
        keeps them) and the API's, files first."""
        declared, _ = self.declared()
        broken = self.broken()
        rows = self.runs.schedules()
        records = {record.id: record for record in rows}
        placed = self._as_declared(declared, rows)
        last = self.runs.last_fires()
        views = []
        for sid, (d, path) in declared.items():
            record = placed.get(sid)
            views.append(self._view(sid, d.spec, "file", record, last.get(record.id) if record else None, path))
        kept = [r for r in records.values() if r.id not in declared and self._is_kept(r, broken)]
        views += [self._kept_view(r, last.get(r.id), broken) for r in kept]
        api = [r for r in records.values() if r.source == "api"]
        return views + [self._view(r.id, r.spec, "api", r, last.get(r.id)) for r in api]

    def view(self, schedule_id: str) -> ScheduleView:
        declared, _ = self.declared()
        if schedule_id in declared:
            found, path = declared[schedule_id]
            placed = self._as_declared(declared, self.runs.schedules()).get(schedule_id)
            fires = self.runs.fires(placed.id, limit=1) if placed is not None else []
            return self._view(schedule_id, found.spec, "file", placed, fires[0] if fires else None, path)
        record = self.runs.schedule(schedule_id)
        fires = self.runs.fires(schedule_id, limit=1)
        last = fires[0] if fires else None
        broken = self.broken() if record is not None and record.source == "file" else {}
        if record is not None and self._is_kept(record, broken):
            return self._kept_view(record, last, broken)
        if record is None or record.source != "api":
            raise ScheduleNotFound(f"no schedule {schedule_id}")
        return self._view(schedule_id, record.spec, "api", record, last)

    def _view(
        self,
        schedule_id: str,
        spec: ScheduleSpec,
        source: str,
        record: ScheduleRecord | None,
        last: Fire | None,
        path: str | None = None,
        error: str | None = None,
    ) -> ScheduleView:
        paused = bool(record and record.paused)
        now = self.clock()
        upcoming = (
            () if paused or error else tuple(spec.timing.next_fires(max(now, record.cursor if record else now), 5))
        )
        run = self.runs.get(last.run_id) if last is not None and last.run_id else None
        created, updated = (record.created_at, record.updated_at) if record else (None, None)
        # the file as the chains folder names it (<type>/<file>): answers never show where the server keeps files
        shown = "/".join(os.path.normpath(path).split(os.sep)[-2:]) if path else None
        hidden = self.private.of(spec.ref) if spec.params else frozenset()
        return ScheduleView(
            schedule_id, source, spec, paused, upcoming, last, run, created, updated, shown, hidden, error
        )

    def fires(self, schedule_id: str, limit: int = 50, backfill_id: str | None = None) -> list[tuple[Fire, Run | None]]:
        """A schedule's fires, newest first, each with its run."""
        self.view(schedule_id)  # ScheduleNotFound
        fires = self.runs.fires(schedule_id, limit=limit, backfill_id=backfill_id)
        return [(fire, self.runs.get(fire.run_id) if fire.run_id else None) for fire in fires]

    # --- writes ---

    def check(self, values: Mapping[str, Any]) -> ScheduleSpec:
        """A definition read and checked against its task; :class:`InvalidParameters` names each bad field."""
        spec = ScheduleSpec.from_definition(values)
        try:
            info = self.nectar.task(*spec.ref)
        except NotFound as exc:
            raise InvalidParameters({"task": [str(exc)]}) from None
        check_spec(spec, info)
        if spec.preload is not None:
            fire = spec.timing.next_after(self.clock())
            spec.preload.check_import(
                self.nectar, Moment(fire, spec.timing.timezone, spec.offset, spec.fire_time_param)
            )
        return spec

    def create(self, values: Mapping[str, Any]) -> ScheduleView:
        """A new schedule from ``POST /api/schedules``: fires from ``start`` (or now) on, unless paused."""
        spec = self.check(values)
        paused = values.get("paused", False)
        if not isinstance(paused, bool):
            raise InvalidParameters({"paused": ["must be true or false"]})
        now = self.clock()
        start = values.get("start")
        cursor = now if start is None else parse_time("start", start, spec.timing.timezone) - 1e-3
        if not abs(cursor - now) <= MAX_SPAN_S:  # its fire times would leave the calendar
            raise InvalidParameters({"start": ["must be within 100 years of now"]})
        record = ScheduleRecord(uuid.uuid4().hex[:16], "api", spec, 1, paused, cursor, now, now)
        self.runs.add_schedule(record)
        return self.view(record.id)

    def change(self, schedule_id: str, values: Mapping[str, Any]) -> ScheduleView:
        """``PATCH``: pause or resume any schedule; edit the definition of one made over HTTP."""
        current = self.view(schedule_id)
        paused = values.get("paused")
        if paused is not None and not isinstance(paused, bool):
            raise InvalidParameters({"paused": ["must be true or false"]})
        edits = {name: value for name, value in values.items() if name != "paused"}
        fixed = {name: [ONLY_AT_CREATION[name]] for name in edits if name in ONLY_AT_CREATION}
        if fixed:  # not part of the definition: taken when a schedule is made, never changed
            raise InvalidParameters(fixed)
        spec = None
        if edits and current.source == "file":
            raise ScheduleConflict(
                f"schedule {schedule_id} is declared in {current.path}: edit it there (over HTTP it can only be "
                f"paused or resumed; the fields sent: {', '.join(sorted(edits))})"
            )
        if edits:
            spec = self.check({**current.spec.definition(), **edits})
        if current.source == "file":
            self.sync()  # its row, if no scheduler has made it yet
        changed = self.runs.change_schedule(schedule_id, self.clock(), spec=spec, paused=paused)
        if changed is None:
            raise ScheduleNotFound(f"no schedule {schedule_id}")
        return self.view(schedule_id)

    def delete(self, schedule_id: str) -> None:
        current = self.view(schedule_id)
        if current.source == "file":
            raise ScheduleConflict(f"schedule {schedule_id} is declared in {current.path}: remove it there")
        self.runs.remove_schedule(schedule_id)

    def sync(self) -> set[str]:
        """Make the registry's rows of file schedules match the files; answer the ids the files declare now.

        The rows of a chain file that does not import are kept (with their pause and cursor) but not fired. The rows
        are read and compared only when the files or the registry's change counter moved since they last matched:
        the loop syncs at every pass."""
        declared, failing = self.declared()
        specs = [(sid, found.spec) for sid, (found, _) in declared.items()]
        seen = (self.runs.schedule_changes(), tuple((sid, spec.text()) for sid, spec in specs), tuple(failing))
        if seen != self._synced:  # else neither the files nor any schedule's row changed since they matched
            changed = self.runs.sync_declared(specs, failing, self.clock())
            self._synced = None if changed else seen  # its own change moved the counter: compared once more
        return set(declared)

    # --- fires ---

    def prepare(self, record: ScheduleRecord, fire_time: float) -> FireOutcome:
        """What a fire of ``record`` makes: its run, nothing (the output exists), or a skip saying why; with a
        pre-load strategy (:mod:`nectar.preload`), the run may wait (WAITING) or be skipped, an import run first.

        :raises NectarError: the store cannot say whether the output exists (the fire is tried again later).
        """
        spec = record.spec
        try:
            # as the catalog saw it when this pass began (the loop refreshes it then), else looked up with its error
            info = self.nectar.task_to_fire(*spec.ref)
            instance = info.instantiate(sample_values(spec, info, fire_time))
        except NectarError as exc:
            return FireOutcome(skip=f"cannot make the task: {exc}")
        except Exception as exc:  # the task's own code raised making it: as luigi would fail to schedule it
            return FireOutcome(skip=f"cannot make the task: {type(exc).__name__}: {exc}")
        try:
            run = self.nectar.new_run(info, instance, schedule_id=record.id, fire_time=fire_time)
        except InvalidTask as exc:  # its class's own retry policy: its code must change, not a fire tried again
            return FireOutcome(skip=f"cannot make the task: {exc}")
        if run is None or spec.preload is None:
            return FireOutcome(run=run)
        moment = Moment(fire_time, spec.timing.timezone, spec.offset, spec.fire_time_param)
        return spec.preload.outcome(self.nectar, run, moment, self.clock())

    def backfill(self, schedule_id: str, start: Any, end: Any) -> Backfill:
        """Hold a fire for every fire time in [start, end] not fired yet, and queue the first ones at once."""
        self.view(schedule_id)
        self.sync()
        record = self.runs.schedule(schedule_id)
        if record is None:
            raise ScheduleNotFound(f"no schedule {schedule_id}")
        zone = record.spec.timing.timezone
        begin, until = parse_time("start", start, zone), parse_time("end", end, zone, whole_day=True)
        if until < begin:
            raise InvalidParameters({"end": ["is before start"]})
        if until > self.clock():
            raise InvalidParameters({"end": ["is in the future: the schedule itself fires from now on"]})
        if self.clock() - begin > MAX_SPAN_S:  # its fire times would leave the calendar
            raise InvalidParameters({"start": ["must be within 100 years of now"]})
        times = record.spec.timing.fires_between(begin - 1e-3, until, limit=MAX_BACKFILL + 1)
        if len(times) > MAX_BACKFILL:
            raise InvalidParameters({"end": [f"the range holds more than {MAX_BACKFILL} fire times: split it"]})
        backfill_id = uuid.uuid4().hex[:16]
        held = self.runs.hold(schedule_id, record.version, times, backfill_id)
        self.release(record)
        fires = tuple(self.runs.fires(schedule_id, limit=MAX_BACKFILL, backfill_id=backfill_id))
        return Backfill(backfill_id, schedule_id, tuple(times), len(times) - len(held), fires)

    def release(self, record: ScheduleRecord, held: list[tuple[float, bool]] | None = None) -> int:
        """Queue held fires of ``record``, oldest first, while its ``max_active`` allows; answer how many.

        A held fire past the schedule's starting deadline is skipped, unless a backfill asked for it."""
        times = held if held is not None else self.runs.held().get(record.id, [])
        made = 0
        deadline = record.spec.starting_deadline_s
        for fire_time, backfilled in times:
            late = self.clock() - fire_time
            if deadline is not None and late > deadline and not backfilled:
                outcome = FireOutcome(skip=f"missed its starting deadline ({deadline:g}s): held {late:.0f}s")
            else:
                outcome = self.prepare(record, fire_time)
            cap = record.spec.cap
            state = self.runs.release(
                record.id, record.version, fire_time, outcome, cap, now=self.clock(), max_pending=self.max_queue
            )
            if state in ("held", "stale"):
                break
            made += state != "exists"
        return made


def _chain_of(record: ScheduleRecord) -> str:
    """The ``<type>/<chain>`` of a schedule's task."""
    return record.spec.task.rpartition("/")[0]
