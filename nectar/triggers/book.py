"""Every data trigger, from chain files and from the API, as one list: read, made, changed, paused, removed, polled.

:class:`TriggerBook` is what the HTTP API, the CLI and the trigger loop (:mod:`nectar.triggers.loop`)
share: the same checks for a trigger whatever its source, the same view of it, and :meth:`poll`,
which lists what landed after the trigger's cursor and claims it, each object (or group of
objects, in batch mode) once, as an ordinary run of the task: same key, same dedupe.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, takewhile
from typing import TYPE_CHECKING, Any

from nectar.declarations import Declared, PrivateNames, declared_in
from nectar.errors import InvalidParameters, InvalidTask, NectarError, NotFound, TriggerConflict, TriggerNotFound
from nectar.preload import Moment
from nectar.registry.model import iso_utc
from nectar.registry.schedules import FireOutcome
from nectar.registry.sql import queue_full
from nectar.registry.triggers import Claim, Seen, TriggerCounts
from nectar.stores.listing import ListStats, StoredObject, list_objects
from nectar.triggers.declared import check_trigger, trigger_values
from nectar.triggers.model import TriggerObject, TriggerRecord, TriggerSpec, start_cursor

if TYPE_CHECKING:
    from nectar.registry import Run
    from nectar.service import Nectar

#: objects one poll of one trigger lists at most (more are taken by the next poll, due at once)
POLL_OBJECTS = 10_000
#: seconds before a trigger was made that an object may have changed and still be new to it (S3 tells the time of a
#: change to the second): one written as the trigger was made is run rather than missed
NEW_SLACK_S = 1.0
#: definition fields a change cannot edit, and why
FIXED = {"prefix": "cannot change: its cursor is a key under this prefix; make a new trigger for another one"}


@dataclass(frozen=True)
class TriggerView:
    """A trigger as every listing shows it, whatever its source."""

    id: str
    source: str
    spec: TriggerSpec
    record: TriggerRecord | None
    counts: TriggerCounts
    #: where a file trigger is declared: ``<type>/<file>`` in the chains folder
    path: str | None = None
    #: its fixed parameters whose values are never shown: those luigi calls private (:class:`PrivateNames`)
    hidden: frozenset[str] = frozenset()

    @property
    def paused(self) -> bool:
        return bool(self.record and self.record.paused)

    def to_dict(self) -> dict[str, Any]:
        record = self.record
        definition = self.spec.definition()
        return {
            "id": self.id,
            "source": self.source,
            **definition,
            "params": PrivateNames.shown(definition["params"], self.hidden),
            "paused": self.paused,
            "cursor": record.cursor if record else None,
            "last_object": self.spec.location.uri(record.last_object) if record and record.last_object else None,
            "polled_at": iso_utc(record.polled_at) if record else None,
            "error": record.error if record else None,
            "objects_seen": self.counts.objects,
            "runs_made": self.counts.runs,
            "skipped": self.counts.skipped,
            "files_waiting": self.counts.waiting,
            "created_at": record.created_at if record else None,
            "updated_at": record.updated_at if record else None,
            "path": self.path,
        }


@dataclass
class Poll:
    """What one poll of one trigger did: objects listed, claims by state, the store requests it made, and the
    listing's error (None: it listed)."""

    listed: int = 0
    states: dict[str, int] = field(default_factory=dict)
    stats: ListStats = field(default_factory=ListStats)
    error: str | None = None
    #: more objects are waiting than one poll lists: poll again at once
    more: bool = False
    #: why the poll stopped with objects left unclaimed for a later poll: the run queue was full
    full: str | None = None


class TriggerBook:
    """The triggers of one service: files (through the catalog) and the registry together."""

    def __init__(self, nectar: Nectar, clock: Callable[[], float] = time.time) -> None:
        self.nectar = nectar
        self.clock = clock
        self.private = PrivateNames(nectar.catalog)
        self._synced: tuple[Any, ...] | None = None

    @property
    def runs(self) -> Any:
        return self.nectar.runs

    # --- reads ---

    def declared(self) -> tuple[dict[str, tuple[Declared[TriggerSpec], str]], list[str]]:
        """The file triggers (with the file declaring each), and the chains whose files do not import now."""
        return declared_in(self.nectar.chains(), lambda info: info.triggers)

    def views(self) -> list[TriggerView]:
        """Every trigger: the files' (as the catalog reads them now) and the API's, files first."""
        declared, _ = self.declared()
        records = {record.id: record for record in self.runs.triggers()}
        counts = self.runs.trigger_counts()
        views = [self._view(tid, d.spec, "file", records.get(tid), counts, path) for tid, (d, path) in declared.items()]
        api = [r for r in records.values() if r.source == "api"]
        return views + [self._view(r.id, r.spec, "api", r, counts) for r in api]

    def view(self, trigger_id: str) -> TriggerView:
        declared, _ = self.declared()
        record = self.runs.trigger(trigger_id)
        counts = self.runs.trigger_counts(trigger_id)  # one trigger's objects, not every trigger's
        if trigger_id in declared:
            found, path = declared[trigger_id]
            return self._view(trigger_id, found.spec, "file", record, counts, path)
        if record is None or record.source != "api":
            raise TriggerNotFound(f"no trigger {trigger_id}")
        return self._view(trigger_id, record.spec, "api", record, counts)

    def _view(
        self,
        trigger_id: str,
        spec: TriggerSpec,
        source: str,
        record: TriggerRecord | None,
        counts: Mapping[str, TriggerCounts],
        path: str | None = None,
    ) -> TriggerView:
        # the file as the chains folder names it (<type>/<file>): answers never show where the server keeps files
        shown = "/".join(os.path.normpath(path).split(os.sep)[-2:]) if path else None
        hidden = self.private.of(spec.ref) if spec.params else frozenset()
        return TriggerView(trigger_id, source, spec, record, counts.get(trigger_id, TriggerCounts()), shown, hidden)

    def objects(self, trigger_id: str, limit: int = 50) -> list[tuple[TriggerObject, Run | None]]:
        """A trigger's claimed objects, the latest first, each with its run."""
        self.view(trigger_id)  # TriggerNotFound
        found = self.runs.trigger_objects(trigger_id, limit=limit)
        return [(obj, self.runs.get(obj.run_id) if obj.run_id else None) for obj in found]

    # --- writes ---

    def check(self, values: Mapping[str, Any]) -> TriggerSpec:
        """A definition made over HTTP, read and checked against its task and its store; :class:`InvalidParameters`
        names each bad field (a bucket that does not exist or cannot be read, a folder outside the landing roots:
        ``prefix``, with the store's own error)."""
        spec = TriggerSpec.from_definition(values)
        try:
            info = self.nectar.task(*spec.ref)
        except NotFound as exc:
            raise InvalidParameters({"task": [str(exc)]}) from None
        check_trigger(spec, info)
        spec.location.check_allowed(self.nectar.settings.landing_root_paths)  # made over HTTP: not any folder
        spec.location.check()
        if spec.preload is not None:
            spec.preload.check_import(self.nectar, Moment(self.clock()))
        return spec

    def create(self, values: Mapping[str, Any]) -> TriggerView:
        """A new trigger from ``POST /api/triggers``: ``existing: new`` starts after the last object there now."""
        spec = self.check(values)
        paused = values.get("paused", False)
        if not isinstance(paused, bool):
            raise InvalidParameters({"paused": ["must be true or false"]})
        now = self.clock()
        record = TriggerRecord(uuid.uuid4().hex[:16], "api", spec, 1, paused, start_cursor(spec), now, now)
        self.runs.add_trigger(record)
        return self.view(record.id)

    def change(self, trigger_id: str, values: Mapping[str, Any]) -> TriggerView:
        """``PATCH``: pause or resume any trigger; edit the definition of one made over HTTP."""
        current = self.view(trigger_id)
        paused = values.get("paused")
        if paused is not None and not isinstance(paused, bool):
            raise InvalidParameters({"paused": ["must be true or false"]})
        edits = {name: value for name, value in values.items() if name != "paused"}
        if edits and current.source == "file":
            raise TriggerConflict(
                f"trigger {trigger_id} is declared in {current.path}: edit it there (over HTTP it can only be "
                f"paused or resumed; the fields sent: {', '.join(sorted(edits))})"
            )
        fixed = {name: [why] for name, why in FIXED.items() if name in edits and edits[name] != current.spec.prefix}
        if fixed:
            raise InvalidParameters(fixed)
        spec = self.check({**current.spec.definition(), **edits}) if edits else None
        if current.source == "file":
            self.sync()  # its row, if no trigger loop has made it yet
        if self.runs.change_trigger(trigger_id, self.clock(), spec=spec, paused=paused) is None:
            raise TriggerNotFound(f"no trigger {trigger_id}")
        return self.view(trigger_id)

    def delete(self, trigger_id: str) -> None:
        current = self.view(trigger_id)
        if current.source == "file":
            raise TriggerConflict(f"trigger {trigger_id} is declared in {current.path}: remove it there")
        self.runs.remove_trigger(trigger_id)

    def sync(self) -> set[str]:
        """Make the registry's rows of file triggers match the files; answer the ids the files declare now (compared
        only when the files or the registry's change counter moved since they last matched)."""
        declared, failing = self.declared()
        specs = [(tid, found.spec) for tid, (found, _) in declared.items()]
        seen = (self.runs.schedule_changes(), tuple((tid, spec.text()) for tid, spec in specs), tuple(failing))
        if seen != self._synced:
            changed = self.runs.sync_declared_triggers(specs, failing, self.clock())
            self._synced = None if changed else seen
        return set(declared)

    # --- polls ---

    def prepare(self, record: TriggerRecord, uris: Sequence[str]) -> FireOutcome:
        """What some objects make: their run, nothing (the output exists), or a skip saying why; with a pre-load
        strategy (:mod:`nectar.preload`), the run may wait (WAITING) or be skipped, an import run first.

        :raises NectarError: the store cannot say whether the output exists (the objects are claimed later).
        """
        spec = record.spec
        try:
            info = self.nectar.task_to_fire(*spec.ref)
            instance = info.instantiate(trigger_values(spec, uris))
        except NectarError as exc:
            return FireOutcome(skip=f"cannot make the task: {exc}")
        except Exception as exc:  # the task's own code raised making it: as luigi would fail to schedule it
            return FireOutcome(skip=f"cannot make the task: {type(exc).__name__}: {exc}")
        try:
            run = self.nectar.new_run(info, instance, trigger_id=record.id, objects=tuple(uris))
        except InvalidTask as exc:  # its class's own retry policy: its code must change, not a fire tried again
            return FireOutcome(skip=f"cannot make the task: {exc}")
        if run is None or spec.preload is None:
            return FireOutcome(run=run)
        now = self.clock()  # a claim's "fire time" (its templates', its wait's start): now, in UTC
        return spec.preload.outcome(self.nectar, run, Moment(now), now)

    def poll(self, record: TriggerRecord) -> Poll:
        """List what landed after the trigger's cursor and claim it, group by group, in key order."""
        poll = Poll()
        spec = record.spec
        # a trigger's first poll, when it takes only new objects, lists the whole place once (in the loop, never in a
        # request) to start after it, and claims what changed since the trigger was made; one cut short (the queue
        # full) goes on after the last object it claimed (claims go in key order), not from the place's start
        starting = record.cursor is None
        since = record.created_at - NEW_SLACK_S
        after = (record.last_object if starting else record.cursor) or None
        try:
            if starting and self._first_group_full(record, after, since, poll):
                self.runs.polled(record.id, self.clock(), None)
                return poll
            found = self._listing(spec, after, poll.stats, None if starting else POLL_OBJECTS)
            listed = [item for item in found if not starting or item.modified > since]
        except NectarError as exc:  # the bucket went away, the folder cannot be read: shown on the trigger
            poll.error = str(exc)
            self.runs.polled(record.id, self.clock(), poll.error)
            return poll
        poll.listed, poll.more = len(listed), not starting and len(listed) >= POLL_OBJECTS
        size = spec.batch_size or 1
        for start in range(0, len(listed), size):
            group = listed[start : start + size]
            full = self._full(record, group) if start == 0 else None  # a poll that fills the queue: its claim tells
            claim = Claim("full", reason=full) if full is not None else self._claim(record, group)
            poll.states[claim.state] = poll.states.get(claim.state, 0) + 1
            if claim.state == "stale":
                return poll
            if claim.state == "full":  # the rest waits, unclaimed, the cursor before it: polled again in its time
                poll.full, poll.more = claim.reason, False
                self.runs.polled(record.id, self.clock(), None)
                return poll
        if starting:  # unless another process did; a first poll cut short (stale, full) starts nothing: the next
            # one lists the whole place again, so what was there before the trigger is never taken
            self.runs.start_trigger(record.id, record.version, poll.stats.last_key or after or "")
        # objects the glob passed over are dealt with too: the cursor moves past them
        self.runs.polled(record.id, self.clock(), None, poll.stats.last_key)
        return poll

    def _first_group_full(self, record: TriggerRecord, after: str | None, since: float, poll: Poll) -> bool:
        """Whether a first poll (``existing: new``, after ``after``) stops at its first group, the queue full: read
        with the queue at its bound only, and only as far as that group (the listing read lazily), not the whole
        place: a first poll cut short again and again reads no more each time than the objects up to it."""
        if self.runs.queued() < int(self.nectar.settings.max_queue):
            return False
        looked = ListStats()
        found = list_objects(record.spec.location, record.spec.glob, start_after=after, stats=looked)
        group = list(islice((item for item in found if item.modified > since), record.spec.batch_size or 1))
        poll.stats.requests += looked.requests
        poll.stats.objects += looked.objects
        full = self._full(record, group) if group else None
        if full is None:
            return False
        poll.states["full"], poll.full = 1, full
        return True

    @staticmethod
    def _listing(spec: TriggerSpec, cursor: str | None, stats: ListStats, limit: int | None) -> list[StoredObject]:
        """What landed after ``cursor``, in key order, read twice when anything was there.

        A listing is no snapshot: a big folder takes several system calls to read, and a file landing between
        two of them can be missed while a later one is given (nor does S3 promise more of a listing racing
        writes). The cursor moves to the last key read, so a missed object would be lost for good. Hence the
        second read, up to that key: everything up to it had landed before the first read ended (keys land in
        order), so before the second began, which gives it. A poll that finds nothing reads once.
        """
        location = spec.location
        first = list(list_objects(location, spec.glob, limit=limit, start_after=cursor, stats=stats))
        last = stats.last_key
        if last is None:
            return first
        again = ListStats()
        read = list_objects(location, spec.glob, start_after=cursor, stats=again)
        confirmed = list(takewhile(lambda found: found.key.encode() <= last.encode(), read))
        stats.requests += again.requests
        stats.objects += again.objects
        return confirmed

    def _full(self, record: TriggerRecord, group: Sequence[StoredObject]) -> str | None:
        """Why ``group``, a poll's first, cannot be queued now, read before its run is prepared (no output checked,
        no pre-load's place listed): the queue at its bound and no active run of its key to join (its task is made,
        only for its key). None: the claim decides, under the trigger's lock, with the queue as it is then."""
        bound = int(self.nectar.settings.max_queue)
        ahead = self.runs.queued()
        if ahead < bound:
            return None
        try:
            info = self.nectar.task_to_fire(*record.spec.ref)
            key = info.key_of(info.instantiate(trigger_values(record.spec, [found.uri for found in group])))
        except Exception:  # the claim records why it cannot be made (a skip takes no room in the queue)
            return None
        joined = self.runs.latest(key.path)
        return None if joined is not None and joined.state.active else f"the run queue is full: {queue_full(ahead)}"

    def _claim(self, record: TriggerRecord, group: Sequence[StoredObject]) -> Claim:
        uris = {found.key: found.uri for found in group}
        seen = [Seen(found.key, found.version, found.modified) for found in group]
        return self.runs.claim_objects(
            record.id,
            record.version,
            seen,
            lambda fresh: self.prepare(record, [uris[s.key] for s in fresh]),
            self.clock(),
            int(self.nectar.settings.max_queue),
        )
