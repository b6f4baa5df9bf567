"""Triggers and the objects they claimed in SQL that SQLite and PostgreSQL both speak (see
:mod:`nectar.registry.triggers`).

Keys are compared in Python, never in SQL: S3 orders keys by their bytes, and PostgreSQL compares
text by its collation, which does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from nectar.registry.fire_counts import OBJECTS, READ_TRIGGER_COUNTS, READ_TRIGGER_RUNS, READ_TRIGGER_WAITING
from nectar.registry.schedules import FireOutcome
from nectar.registry.schedules_sql import SPECS_KEPT, SqlSchedules
from nectar.registry.sql import ACTIVE
from nectar.registry.triggers import Claim, Seen, TriggerCounts
from nectar.triggers.model import TriggerObject, TriggerRecord, TriggerSpec, start_cursor

#: each trigger's objects whose run has not ended
WAITING = READ_TRIGGER_WAITING.format(active=ACTIVE)

TRIGGER_COLUMNS = (
    "id, source, task, definition, version, paused, cursor, created_at, updated_at, polled_at, last_object, error"
)
OBJECT_COLUMNS = "trigger_id, object_key, version, state, run_id, reason, modified, recorded_at"
#: objects looked up in one statement when a claim checks which are taken
LOOKUP_CHUNK = 500


@lru_cache(maxsize=SPECS_KEPT)
def trigger_spec_of(definition: str) -> TriggerSpec:
    """A stored definition read, once (a spec is immutable)."""
    return TriggerSpec.from_definition(json.loads(definition))


def trigger_of(row: Any) -> TriggerRecord:
    values = dict(row)
    spec = trigger_spec_of(values.pop("definition"))
    values.pop("task")
    return TriggerRecord(spec=spec, **{**values, "paused": bool(values["paused"])})


def _trigger_row(trigger: TriggerRecord) -> tuple[Any, ...]:
    return (
        trigger.id,
        trigger.source,
        trigger.spec.task,
        trigger.spec.text(),
        trigger.version,
        int(trigger.paused),
        trigger.cursor,
        trigger.created_at,
        trigger.updated_at,
        trigger.polled_at,
        trigger.last_object,
        trigger.error,
    )


#: what a new version of a trigger's definition sets besides: a trigger not started (its first poll cut short) forgets
#: its last claim, which the next first poll would go on after (:meth:`~nectar.triggers.book.TriggerBook.poll`): the
#: new glob may take objects before it, which were listed under the old one only
EDITED = "last_object = CASE WHEN cursor IS NULL THEN NULL ELSE last_object END"


def later(cursor: str | None, key: str | None) -> str | None:
    """The later of two keys in S3's order (None: before every key)."""
    if key is None:
        return cursor
    return key if cursor is None or key.encode() > cursor.encode() else cursor


class SqlTriggers(SqlSchedules):
    """The registry's runs and schedules (:class:`SqlSchedules`) and its triggers, in SQL."""

    def triggers(self) -> list[TriggerRecord]:
        text = f"SELECT {TRIGGER_COLUMNS} FROM triggers ORDER BY created_at, id"
        return [trigger_of(row) for row in self._read(lambda db: self._exec(db, text).fetchall())]

    def trigger(self, trigger_id: str) -> TriggerRecord | None:
        text = f"SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?"
        row = self._read(lambda db: self._exec(db, text, (trigger_id,)).fetchone())
        return None if row is None else trigger_of(row)

    def _insert_trigger(self, db: Any, trigger: TriggerRecord) -> bool:
        marks = ", ".join("?" * len(TRIGGER_COLUMNS.split(", ")))
        text = f"INSERT INTO triggers ({TRIGGER_COLUMNS}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"
        return int(self._exec(db, text, _trigger_row(trigger)).rowcount) == 1

    def add_trigger(self, trigger: TriggerRecord) -> bool:
        with self._db() as db:
            added = self._insert_trigger(db, trigger)
            if added:
                self._changed(db)
        return added

    def change_trigger(
        self, trigger_id: str, now: float, spec: TriggerSpec | None = None, paused: bool | None = None
    ) -> TriggerRecord | None:
        with self._db() as db:
            row = self._exec(db, f"SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?{self.LOCK}", (trigger_id,))
            before = row.fetchone()
            if before is None:
                return None
            current = trigger_of(before)
            if spec is not None and spec.text() != current.spec.text():
                self._exec(
                    db,
                    f"UPDATE triggers SET definition = ?, task = ?, version = version + 1, updated_at = ?, {EDITED} "
                    "WHERE id = ?",
                    (spec.text(), spec.task, now, trigger_id),
                )
            if paused is not None and paused != current.paused:  # resumed, it takes what landed meanwhile too
                self._exec(
                    db, "UPDATE triggers SET paused = ?, updated_at = ? WHERE id = ?", (int(paused), now, trigger_id)
                )
            self._changed(db)
            after = self._exec(db, f"SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?", (trigger_id,)).fetchone()
        return trigger_of(after)

    def remove_trigger(self, trigger_id: str) -> bool:
        with self._db() as db:
            removed = int(self._exec(db, "DELETE FROM triggers WHERE id = ?", (trigger_id,)).rowcount) == 1
            if removed:
                self._changed(db)
        return removed

    def sync_declared_triggers(
        self, declared: Sequence[tuple[str, TriggerSpec]], kept: Sequence[str], now: float
    ) -> bool:
        def add(db: Any, trigger_id: str, spec: Any) -> None:
            self._insert_trigger(db, TriggerRecord(trigger_id, "file", spec, 1, False, start_cursor(spec), now, now))

        return self._sync_file_rows("triggers", declared, kept, now, add, lambda db, trigger_id: None, EDITED)

    def start_trigger(self, trigger_id: str, version: int, cursor: str) -> bool:
        with self._db() as db:
            text = "UPDATE triggers SET cursor = ? WHERE id = ? AND version = ? AND cursor IS NULL"
            started = int(self._exec(db, text, (cursor, trigger_id, version)).rowcount) == 1
        return started

    def _taken(self, db: Any, trigger_id: str, objects: Sequence[Seen]) -> set[tuple[str, str]]:
        taken: set[tuple[str, str]] = set()
        keys = sorted({seen.key for seen in objects})
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            text = (
                "SELECT object_key, version FROM trigger_objects "
                f"WHERE trigger_id = ? AND object_key IN ({', '.join('?' * len(chunk))})"
            )
            taken.update((row["object_key"], row["version"]) for row in self._exec(db, text, (trigger_id, *chunk)))
        return taken

    def claim_objects(
        self,
        trigger_id: str,
        version: int,
        objects: Sequence[Seen],
        outcome: Callable[[Sequence[Seen]], FireOutcome],
        now: float,
        max_pending: int | None = None,
    ) -> Claim:
        if not objects:
            return Claim("exists")
        with self._db() as db:
            if self.FIRE_IDLE_LIMIT:
                self._exec(db, self.FIRE_IDLE_LIMIT)
            text = f"SELECT cursor FROM triggers WHERE id = ? AND version = ? AND paused = 0{self.LOCK}"
            row = self._exec(db, text, (trigger_id, version)).fetchone()
            if row is None:  # changed, paused or removed since its loop read it
                return Claim("stale")
            # a trigger not started keeps no cursor until its first poll ends (``existing: new``): a first poll cut
            # short lists the whole place again, where what was there before the trigger is still told apart
            cursor = None if row["cursor"] is None else later(row["cursor"], objects[-1].key)
            taken = self._taken(db, trigger_id, objects)
            fresh = tuple(seen for seen in objects if (seen.key, seen.version) not in taken)
            if fresh:
                made = outcome(fresh)
                full = self._queue_full(db, made, max_pending)
                if full is not None:  # unclaimed, the cursor before them: a later poll sees them again
                    return Claim("full", reason=full)
            self._exec(db, "UPDATE triggers SET cursor = ? WHERE id = ?", (cursor, trigger_id))
            if not fresh:
                return Claim("exists")
            run_id, reason = None, made.skip
            if made.skip is not None:
                state = "skipped"
            elif made.run is None:
                state, reason = "done", "its output already exists"
            else:
                maker, values = "trigger_id = ?, objects = ?", (trigger_id, _objects(made))
                run = self._queue_fire(db, made.run, made.first, maker, values)
                state, run_id = "queued", run.id
                reason = None if run.id == made.run.id else "joined the active run of the same key"
            db.cursor().executemany(
                self._sql(f"INSERT INTO trigger_objects ({OBJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                [(trigger_id, s.key, s.version, state, run_id, reason, s.modified, now) for s in fresh],
            )
            self._exec(db, "UPDATE triggers SET last_object = ? WHERE id = ?", (fresh[-1].key, trigger_id))
        if state == "queued":
            self._queued()
        return Claim(state, run_id)

    def polled(self, trigger_id: str, now: float, error: str | None, cursor: str | None = None) -> None:
        with self._db() as db:
            row = self._exec(db, f"SELECT cursor FROM triggers WHERE id = ?{self.LOCK}", (trigger_id,)).fetchone()
            if row is None:
                return
            moved = later(row["cursor"], cursor) if row["cursor"] is not None else row["cursor"]
            text = "UPDATE triggers SET polled_at = ?, error = ?, cursor = ? WHERE id = ?"
            self._exec(db, text, (now, error, moved, trigger_id))

    def trigger_objects(self, trigger_id: str, limit: int = 50) -> list[TriggerObject]:
        text = (
            f"SELECT {OBJECT_COLUMNS} FROM trigger_objects WHERE trigger_id = ? "
            "ORDER BY recorded_at DESC, object_key DESC LIMIT ?"
        )
        rows = self._read(lambda db: self._exec(db, text, (trigger_id, limit)).fetchall())
        return [TriggerObject(**dict(row)) for row in rows]

    def trigger_counts(self, trigger_id: str | None = None) -> dict[str, TriggerCounts]:
        # the objects waiting are found from the active runs for one trigger as for all (by trigger, the planner
        # would walk every run the trigger made)
        args = (trigger_id,) if trigger_id is not None else ()
        counts_text = READ_TRIGGER_COUNTS.format(only=" WHERE trigger_id = ?" if args else "")

        def read(db: Any) -> tuple[list[Any], list[Any]]:
            return self._exec(db, counts_text, args).fetchall(), self._exec(db, WAITING).fetchall()

        rows, waiting = self._read(read)
        active = {row["trigger_id"]: int(row["waiting"] or 0) for row in waiting}
        return {
            row["trigger_id"]: TriggerCounts(
                int(row["objects"]), int(row["runs"]), int(row["skipped"]), active.get(row["trigger_id"], 0)
            )
            for row in rows
        }

    def trigger_runs(self) -> int:
        return int(self._read(lambda db: self._scalar(db, READ_TRIGGER_RUNS)))

    def object_counts(self) -> dict[str, int]:
        return self._counted_states(OBJECTS)

    def object_lags(self) -> tuple[tuple[int, ...], int, float]:
        return self._counted_lags(OBJECTS)


def _objects(made: FireOutcome) -> str | None:
    objects = made.run.objects if made.run is not None else None
    return None if objects is None else json.dumps(list(objects))
