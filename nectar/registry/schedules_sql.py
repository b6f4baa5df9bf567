"""Schedules and their fires in SQL that SQLite and PostgreSQL both speak (see :mod:`nectar.registry.schedules`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from nectar.registry.fire_counts import FIRES, Counted
from nectar.registry.model import RUN_PREFIX, Run
from nectar.registry.schedules import FireOutcome
from nectar.registry.schema import ACTIVE_OF_KEY, QUEUED, values
from nectar.registry.sql import ACTIVE, SqlRunStore, queue_full
from nectar.schedules.model import Fire, ScheduleRecord, ScheduleSpec, moves

SCHEDULE_COLUMNS = "id, source, task, definition, version, paused, cursor, created_at, updated_at"
FIRE_COLUMNS = "schedule_id, fire_time, state, run_id, reason, version, recorded_at, queued_at, backfill_id"
#: ids one read of :meth:`SqlSchedules.schedules_of` names at most (under SQLite's default bound of 32,766 parameters)
ROWS_A_READ = 500
#: stored definitions kept read (more than the schedules of a big service: a reload of every one reads none again)
SPECS_KEPT = 1 << 15


@lru_cache(maxsize=SPECS_KEPT)
def spec_of(definition: str) -> ScheduleSpec:
    """A stored definition read, once: the loop reads a schedule's row at each of its fires and every row at each
    reload, and parsing the JSON and the timing again each time was most of that read (a spec is immutable)."""
    return ScheduleSpec.from_definition(json.loads(definition))


def schedule_of(row: Any) -> ScheduleRecord:
    values = dict(row)
    spec = spec_of(values.pop("definition"))
    values.pop("task")
    return ScheduleRecord(spec=spec, **{**values, "paused": bool(values["paused"])})


def fire_of(row: Any) -> Fire:
    return Fire(**dict(row))


class SqlSchedules(SqlRunStore):
    """The registry's runs (:class:`SqlRunStore`) and its schedules, in SQL."""

    #: a dialect's statement that bounds how long a fire's transaction, holding its schedule's row, may sit idle
    #: (its process frozen or cut off mid-fire) before the server ends it and the other processes fire on
    FIRE_IDLE_LIMIT = ""

    def _changed(self, db: Any) -> None:
        self._exec(db, "UPDATE schedule_changes SET version = version + 1 WHERE id = 1")

    def schedules(self) -> list[ScheduleRecord]:
        text = f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_at, id"
        return [schedule_of(row) for row in self._read(lambda db: self._exec(db, text).fetchall())]

    def schedule(self, schedule_id: str) -> ScheduleRecord | None:
        text = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?"
        row = self._read(lambda db: self._exec(db, text, (schedule_id,)).fetchone())
        return None if row is None else schedule_of(row)

    def schedules_of(self, schedule_ids: Collection[str]) -> dict[str, ScheduleRecord]:
        ids = list(schedule_ids)
        found: dict[str, ScheduleRecord] = {}
        for start in range(0, len(ids), ROWS_A_READ):
            chunk = ids[start : start + ROWS_A_READ]
            text = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id IN ({', '.join('?' * len(chunk))})"
            found.update((record.id, record) for record in map(schedule_of, self._rows(text, chunk)))
        return found

    def _rows(self, text: str, args: Sequence[Any]) -> list[Any]:
        return list(self._read(lambda db: self._exec(db, text, args).fetchall()))

    def schedule_changes(self) -> int:
        return int(self._read(lambda db: self._scalar(db, "SELECT version FROM schedule_changes WHERE id = 1")))

    def add_schedule(self, schedule: ScheduleRecord) -> bool:
        with self._db() as db:
            cursor = self._exec(
                db,
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                _schedule_row(schedule),
            )
            added = int(cursor.rowcount) == 1
            if added:
                self._changed(db)
        return added

    def change_schedule(
        self, schedule_id: str, now: float, spec: ScheduleSpec | None = None, paused: bool | None = None
    ) -> ScheduleRecord | None:
        with self._db() as db:
            row = self._exec(
                db, f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?{self.LOCK}", (schedule_id,)
            ).fetchone()
            if row is None:
                return None
            before = schedule_of(row)
            if spec is not None and spec.text() != before.spec.text():
                self._exec(
                    db,
                    "UPDATE schedules SET definition = ?, task = ?, version = version + 1, updated_at = ? WHERE id = ?",
                    (spec.text(), spec.task, now, schedule_id),
                )
            if paused is not None and paused != before.paused:
                # what it would have fired while paused is not missed; a start still ahead stays ahead
                resumed = f", cursor = {self.GREATEST}(cursor, ?)" if not paused else ""
                args = (int(paused), now, *((now,) if not paused else ()), schedule_id)
                self._exec(db, f"UPDATE schedules SET paused = ?, updated_at = ?{resumed} WHERE id = ?", args)
            self._changed(db)
            after = self._exec(db, f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        return schedule_of(after)

    def remove_schedule(self, schedule_id: str) -> bool:
        with self._db() as db:
            removed = int(self._exec(db, "DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount) == 1
            self._exec(db, "DELETE FROM fires WHERE schedule_id = ? AND state = 'held'", (schedule_id,))
            if removed:
                self._changed(db)
        return removed

    def sync_declared(self, declared: Sequence[tuple[str, ScheduleSpec]], kept: Sequence[str], now: float) -> bool:
        moved = self._follow_moves(declared)

        def add(db: Any, sid: str, spec: Any) -> None:
            schedule = ScheduleRecord(sid, "file", spec, 1, False, now, now, now)
            self._exec(
                db,
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                _schedule_row(schedule),
            )

        def gone(db: Any, sid: str) -> None:
            self._exec(db, "DELETE FROM fires WHERE schedule_id = ? AND state = 'held'", (sid,))
            _detach_runs(self, db, sid)

        return self._sync_file_rows("schedules", declared, kept, now, add, gone) or moved

    def _follow_moves(self, declared: Sequence[tuple[str, ScheduleSpec]]) -> bool:
        """Move the rows (with their pause, cursor, fires and runs) of file schedules whose place in their task's list
        changed to their new ids (:func:`moves`); the rows at those ids that nothing declares any more go, as a
        removed schedule's do. True if any moved."""
        text = "SELECT id, definition FROM schedules WHERE source = 'file'"
        rows = {row["id"]: row["definition"] for row in self._read(lambda db: self._exec(db, text).fetchall())}
        moving = moves(rows, {sid: spec.text() for sid, spec in declared})
        if not moving:
            return False
        with self._db() as db:
            for target in set(moving.values()) - set(moving):  # an unmoved row in the way: not declared any more
                self._exec(db, "DELETE FROM schedules WHERE id = ? AND source = 'file'", (target,))
                self._exec(db, "DELETE FROM fires WHERE schedule_id = ?", (target,))
                _detach_runs(self, db, target)
            for step in (
                {old: f"{old}~moving" for old in moving},
                {f"{old}~moving": new for old, new in moving.items()},
            ):
                for old, new in step.items():
                    for table, column in (("schedules", "id"), ("fires", "schedule_id"), ("runs", "schedule_id")):
                        self._exec(db, f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))
            self._changed(db)
        return True

    def _sync_file_rows(
        self,
        table: str,
        declared: Sequence[tuple[str, Any]],
        kept: Sequence[str],
        now: float,
        add: Callable[[Any, str, Any], None],
        gone: Callable[[Any, str], None],
        edited_sets: str = "",
    ) -> bool:
        """Make the file rows of ``table`` (schedules, triggers) match ``declared`` (id, spec): ``add`` a new one,
        edit a changed one's definition (a new version), delete the others (``gone`` what else goes with them) but
        those of the chains ``kept``; ``edited_sets``: more ``column = value`` an edited row's ``UPDATE`` sets. True if
        anything changed (the change counter is bumped)."""
        wanted = dict(declared)
        text = f"SELECT id, task, definition FROM {table} WHERE source = 'file'"
        rows = {row["id"]: dict(row) for row in self._read(lambda db: self._exec(db, text).fetchall())}
        failing = tuple(f"{chain}/" for chain in kept)
        removed = [sid for sid, row in rows.items() if sid not in wanted and not row["task"].startswith(failing)]
        new = [sid for sid in wanted if sid not in rows]
        edited = [sid for sid in wanted if sid in rows and rows[sid]["definition"] != wanted[sid].text()]
        sets = f", {edited_sets}" if edited_sets else ""
        if not (removed or new or edited):
            return False  # the usual answer: no write
        with self._db() as db:
            for sid in removed:
                self._exec(db, f"DELETE FROM {table} WHERE id = ? AND source = 'file'", (sid,))
                gone(db, sid)
            for sid in new:
                add(db, sid, wanted[sid])
            for sid in edited:
                spec = wanted[sid]
                self._exec(
                    db,
                    f"UPDATE {table} SET definition = ?, task = ?, version = version + 1, updated_at = ?{sets} "
                    "WHERE id = ? AND definition <> ?",
                    (spec.text(), spec.task, now, sid, spec.text()),
                )
            self._changed(db)
        return True

    def _locked_version(self, db: Any, schedule_id: str) -> int | None:
        if self.FIRE_IDLE_LIMIT:
            self._exec(db, self.FIRE_IDLE_LIMIT)
        return self._scalar(db, f"SELECT version FROM schedules WHERE id = ?{self.LOCK}", (schedule_id,))

    def _active(self, db: Any, schedule_id: str) -> int:
        return int(self._scalar(db, f"SELECT COUNT(*) FROM runs WHERE schedule_id = ? AND {ACTIVE}", (schedule_id,)))

    def _queue_full(self, db: Any, outcome: FireOutcome, max_pending: int | None) -> str | None:
        """Why the runs ``outcome`` would queue do not fit with ``max_pending`` runs queued (PENDING), or None: the
        fire as a whole, its pre-load's import run (``first``) with its run; one that only joins active runs of their
        keys adds nothing and fits."""
        if max_pending is None or outcome.run is None:
            return None
        # the count's row locked as a submission locks it
        ahead = int(self._scalar(db, f"{QUEUED}{self.LOCK}"))
        if ahead < max_pending:
            return None
        made = (outcome.run,) if outcome.first is None else (outcome.first, outcome.run)
        if all(self._select(db, ACTIVE_OF_KEY, run.key) is not None for run in made):
            return None
        return f"the run queue is full: {queue_full(ahead)}"

    def _make(
        self,
        db: Any,
        outcome: FireOutcome,
        schedule_id: str,
        cap: int | None,
        hold: bool,
        earlier_held: bool,
        max_pending: int | None = None,
        when_full: str = "skipped",
    ) -> tuple[str, str | None, str | None]:
        """(state, run id, reason) of a fire that ``outcome`` describes, its run queued here if one is due; with
        ``max_pending`` runs queued and no active run of its key to join, the fire is ``when_full``."""
        if outcome.skip is not None:
            return "skipped", None, outcome.skip
        if outcome.run is None:
            return "done", None, "its output already exists"
        if cap is not None:
            active = self._active(db, schedule_id)
            if active >= cap or (hold and earlier_held):
                if not hold:
                    return "skipped", None, f"{active} run(s) of this schedule still active (at most {cap} at once)"
                return "held", None, f"waits for one of the {active} active run(s) of this schedule to end"
        full = self._queue_full(db, outcome, max_pending)
        if full is not None:
            return when_full, None, full
        # a client's active run of the key makes this fire: it counts among the schedule's active runs
        maker, values = "schedule_id = ?, fire_time = ?", (schedule_id, outcome.run.fire_time)
        run = self._queue_fire(db, outcome.run, outcome.first, maker, values)
        return "queued", run.id, None if run.id == outcome.run.id else "joined the active run of the same key"

    def _queue_fire(self, db: Any, run: Run, first: Run | None, maker: str, values: Sequence[Any]) -> Run:
        """Queue (or join) ``first`` (a pre-load's import run), then ``run``, waiting for the run ``first`` became
        (the active run of its key, if one was joined); answer the run queued or joined."""
        if first is not None:
            queued = self._queue_or_join(db, first, maker, values)
            if queued.id != first.id:
                run = replace(run, waiting_for=(f"{RUN_PREFIX}{queued.id}",))
        return self._queue_or_join(db, run, maker, values)

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
        to = max(fire_time, cursor_to or fire_time)
        with self._db() as db:
            if self.FIRE_IDLE_LIMIT:
                self._exec(db, self.FIRE_IDLE_LIMIT)
            # one statement locks the schedule's row, checks it is still this version and not paused since its loop
            # read it (else the loop reloads, and a paused one is left), and moves its cursor
            moved = self._exec(
                db,
                "UPDATE schedules SET cursor = CASE WHEN cursor < ? THEN ? ELSE cursor END "
                "WHERE id = ? AND version = ? AND paused = 0",
                (to, to, schedule_id, version),
            )
            if int(moved.rowcount) != 1:
                return "stale"
            if self._scalar(
                db, "SELECT 1 FROM fires WHERE schedule_id = ? AND fire_time = ?", (schedule_id, fire_time)
            ):
                return "exists"
            held = "SELECT 1 FROM fires WHERE schedule_id = ? AND state = 'held' LIMIT 1"
            earlier = cap is not None and hold and self._scalar(db, held, (schedule_id,))  # a bounded schedule's queue
            state, run_id, reason = self._make(db, outcome, schedule_id, cap, hold, bool(earlier), max_pending)
            now = time.time() if now is None else now
            self._exec(
                db,
                f"INSERT INTO fires ({FIRE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (schedule_id, fire_time, state, run_id, reason, version, now, now if run_id else None, None),
            )
        if state == "queued":
            self._queued()
        return state

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
        with self._db() as db:
            if self._locked_version(db, schedule_id) != version:
                return "stale"
            held = "schedule_id = ? AND fire_time = ? AND state = 'held'"
            if not self._scalar(db, f"SELECT 1 FROM fires WHERE {held}", (schedule_id, fire_time)):
                return "exists"
            state, run_id, reason = self._make(db, outcome, schedule_id, cap, True, False, max_pending, "held")
            if state == "held":
                return state
            now = time.time() if now is None else now
            self._exec(
                db,
                f"UPDATE fires SET state = ?, run_id = ?, reason = ?, version = ?, recorded_at = ?, queued_at = ? "
                f"WHERE {held}",
                (state, run_id, reason, version, now, now if run_id else None, schedule_id, fire_time),
            )
        if state == "queued":
            self._queued()
        return state

    def hold(self, schedule_id: str, version: int, fire_times: Sequence[float], backfill_id: str) -> list[float]:
        held: list[float] = []
        with self._db() as db:
            if self._locked_version(db, schedule_id) != version:
                return held
            now = time.time()
            for fire_time in fire_times:
                cursor = self._exec(
                    db,
                    f"INSERT INTO fires ({FIRE_COLUMNS}) VALUES (?, ?, 'held', NULL, ?, ?, ?, NULL, ?) "
                    # a skipped fire made no run: a backfill takes it again
                    "ON CONFLICT (schedule_id, fire_time) DO UPDATE SET state = 'held', run_id = NULL, "
                    "reason = excluded.reason, version = excluded.version, recorded_at = excluded.recorded_at, "
                    "queued_at = NULL, backfill_id = excluded.backfill_id WHERE fires.state = 'skipped'",
                    (schedule_id, fire_time, "queued by a backfill", version, now, backfill_id),
                )
                if int(cursor.rowcount) == 1:
                    held.append(fire_time)
        return held

    def held(self, limit: int = 100) -> dict[str, list[tuple[float, bool]]]:
        text = (
            "SELECT schedule_id, fire_time, backfill_id FROM fires WHERE state = 'held' ORDER BY schedule_id, fire_time"
        )
        found: dict[str, list[tuple[float, bool]]] = {}
        for row in self._read(lambda db: self._exec(db, text).fetchall()):
            times = found.setdefault(row["schedule_id"], [])
            if len(times) < limit:
                times.append((float(row["fire_time"]), row["backfill_id"] is not None))
        return found

    def fires(self, schedule_id: str, limit: int = 50, backfill_id: str | None = None) -> list[Fire]:
        where, args = "schedule_id = ?", [schedule_id]
        if backfill_id is not None:
            where, args = where + " AND backfill_id = ?", [*args, backfill_id]
        text = f"SELECT {FIRE_COLUMNS} FROM fires WHERE {where} ORDER BY fire_time DESC LIMIT ?"
        return [fire_of(row) for row in self._read(lambda db: self._exec(db, text, (*args, limit)).fetchall())]

    def last_fires(self) -> dict[str, Fire]:
        text = (
            f"SELECT {', '.join('f.' + c for c in FIRE_COLUMNS.split(', '))} FROM fires f JOIN "
            "(SELECT schedule_id, MAX(fire_time) AS latest FROM fires WHERE state <> 'held' GROUP BY schedule_id) m "
            "ON f.schedule_id = m.schedule_id AND f.fire_time = m.latest"
        )
        return {fire.schedule_id: fire for fire in map(fire_of, self._read(lambda db: self._exec(db, text).fetchall()))}

    def fire_counts(self) -> dict[str, int]:
        return self._counted_states(FIRES)

    def fire_lags(self) -> tuple[tuple[int, ...], int, float]:
        return self._counted_lags(FIRES)

    def _counted(self, counted: Counted) -> tuple[Any, ...]:
        """The row that counts ``counted``'s table (:mod:`~nectar.registry.fire_counts`), in column order."""
        return values(self._read(lambda db: self._exec(db, counted.read()).fetchone()))

    def _counted_states(self, counted: Counted) -> dict[str, int]:
        """How many of ``counted``'s rows are in each of its states, as the database counts them."""
        row = self._counted(counted)[: len(counted.states)]
        return {state: int(n) for state, n in zip(counted.states, row, strict=True)}

    def _counted_lags(self, counted: Counted) -> tuple[tuple[int, ...], int, float]:
        """Of ``counted``'s rows with a lag: how many within each bound, how many in all, their total lag (a
        histogram's buckets, count and sum), as the database counts them."""
        row = self._counted(counted)[len(counted.states) :]
        return tuple(int(n) for n in row[2:]), int(row[0]), float(row[1])


def _schedule_row(schedule: ScheduleRecord) -> tuple[Any, ...]:
    return (
        schedule.id,
        schedule.source,
        schedule.spec.task,
        schedule.spec.text(),
        schedule.version,
        int(schedule.paused),
        schedule.cursor,
        schedule.created_at,
        schedule.updated_at,
    )


def _detach_runs(store: Any, db: Any, schedule_id: str) -> None:
    """The runs a removed file schedule made name no schedule any more (their ``fire_time`` says what fire made
    them): a file schedule's id is its place in its task's list, which the next schedule there takes, and its runs
    were listed as that one's, counted in its ``max_active`` and ``overlap`` (review24)."""
    store._exec(db, "UPDATE runs SET schedule_id = NULL WHERE schedule_id = ?", (schedule_id,))
