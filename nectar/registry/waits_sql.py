"""WAITING runs in SQL that SQLite and PostgreSQL both speak (see :mod:`nectar.registry.waits`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from nectar.registry.model import Run, RunState
from nectar.registry.schema import RUNS, run_of
from nectar.registry.sql import SqlRunStore
from nectar.registry.waits import WaitStore

_WAITING = "id = ? AND state = 'WAITING'"


class SqlWaits(SqlRunStore, WaitStore):
    """The registry's runs (:class:`SqlRunStore`) and their waits for data, in SQL."""

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
        # a run woken too early and waiting again keeps its first deadline: a wait is bounded once, not per attempt
        assignments = (
            "state = 'WAITING', attempt = attempt - 1, not_before = ?, heartbeat_at = NULL, error = ?, "
            "waiting_for = ?, wait_until = COALESCE(wait_until, ?), on_wait_timeout = ?, "
            "waiting_since = ?"
        )
        args = (next_check, reason, json.dumps(list(waiting_for)), until, on_timeout, time.time())
        return self._update_owned(assignments, args, run_id, attempt)

    def waiting(self, now: float, limit: int = 500) -> list[Run]:
        text = f"SELECT {RUNS} FROM runs WHERE state = 'WAITING' AND not_before <= ? ORDER BY not_before, id LIMIT ?"
        rows = self._read(lambda db: self._exec(db, text, (now, max(0, limit))).fetchall())
        return [run for run in map(run_of, rows) if run is not None]

    def check_later(self, run_id: str, next_check: float, reason: str | None = None) -> bool:
        with self._db() as db:
            cursor = self._exec(
                db,
                f"UPDATE runs SET not_before = ?, error = COALESCE(?, error) WHERE {_WAITING}",
                (next_check, reason, run_id),
            )
        return int(cursor.rowcount) == 1

    def wake(self, run_id: str, reason: str | None = None) -> bool:
        # PENDING and due whatever the claimer's clock; its deadline (wait_until) stays, should it wait again
        with self._db() as db:
            cursor = self._exec(
                db,
                "UPDATE runs SET state = 'PENDING', not_before = 0, error = ?, waiting_for = NULL, "
                f"waiting_since = NULL WHERE {_WAITING}",
                (reason, run_id),
            )
            woken = int(cursor.rowcount) == 1
            if woken:  # the step that waited no longer says so: once done, it would say it still waits
                self._exec(db, "UPDATE steps SET error = NULL WHERE run_id = ? AND state = 'PENDING'", (run_id,))
        if woken:
            self._queued()
        return woken

    def end_wait(self, run_id: str, error: str, skip: bool = False, now: float | None = None) -> RunState | None:
        state = RunState.CANCELLED if skip else RunState.FAILED
        now = time.time() if now is None else now
        with self._db() as db:
            run = self._select(db, _WAITING, run_id, lock=True)
            if run is None:
                return None
            # the step that waited (the worker left it PENDING, saying so) is the one the run failed at
            waiter = self._scalar(
                db,
                "SELECT task FROM steps WHERE run_id = ? AND state = 'PENDING' AND error IS NOT NULL "
                "ORDER BY seq DESC LIMIT 1",
                (run_id,),
            )
            self._exec(
                db,
                "UPDATE runs SET state = ?, finished_at = ?, heartbeat_at = NULL, failed_step = ?, error = ? "
                "WHERE id = ?",
                (state.value, now, None if skip else waiter or run.task, error, run_id),
            )
            self._exec(  # its steps end with it, as a cancelled run's do: none is left waiting for a worker
                db,
                "UPDATE steps SET state = 'CANCELLED', updated_at = ? "
                "WHERE run_id = ? AND state IN ('PENDING', 'RUNNING')",
                (now, run_id),
            )
            if skip:  # what made it (a schedule's fire, a trigger's object) is recorded as skipped, saying why
                self._exec(db, "UPDATE fires SET state = 'skipped', reason = ? WHERE run_id = ?", (error, run_id))
                self._exec(
                    db, "UPDATE trigger_objects SET state = 'skipped', reason = ? WHERE run_id = ?", (error, run_id)
                )
        return state
