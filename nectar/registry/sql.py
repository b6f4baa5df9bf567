"""The registry's writes in SQL that every dialect speaks: a run's life from its submission to its end.

``SqlRunStore`` adds them to the reads of :class:`~nectar.registry.reads.SqlReads`; a dialect
supplies its connections, transactions and migrations, and spells the few things databases spell
differently (see :class:`~nectar.registry.reads.SqlReads`).
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from nectar.errors import QueueFull, RunFinished, RunNotFound
from nectar.registry.combine import Outcome
from nectar.registry.model import Run, RunState, Step, lease_ran_out
from nectar.registry.reads import SqlReads
from nectar.registry.schema import (
    ACTIVE_OF_KEY,
    ATTEMPT_COLUMNS,
    ONE_ACTIVE,
    QUEUED,
    RUN_COLUMNS,
    RUNS,
    STEP_COLUMNS,
    RunStatus,
    param_marks,
    params_json,
    run_of,
    run_row,
    values,
)

_OWNED = "id = ? AND attempt = ? AND state = 'RUNNING'"
#: a lease renewed since the time bound (now less the lease's timeout): held by :func:`~nectar.registry.model.
#: lease_ran_out`'s rule, whatever the registry's start (one that came up since is asked only when this fails)
_HELD = "COALESCE(heartbeat_at, started_at, 0) >= ?"
#: the states of an active run (one a key; the index of one a key has :data:`~nectar.registry.schema.ONE_ACTIVE`)
ACTIVE = "state IN ('PENDING', 'RUNNING', 'WAITING')"


def insert_new(columns: Sequence[str]) -> str:
    """A new run's ``columns``, unless one of its key is active (the conflict target names the partial unique
    index's condition)."""
    marks = param_marks(columns)
    return f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT (key) WHERE {ONE_ACTIVE} DO NOTHING"


#: a new run, unless one of its key is active
INSERT_NEW = insert_new(RUN_COLUMNS)
#: the columns a new run has no value in yet (its start, end, worker, error, heartbeat and waits), nor one that no
#: schedule or trigger made (theirs): a run without any is written naming only the others (:func:`fresh_row`), which
#: the database leaves NULL, as it writes a None bound. The sqlite3 module binds each None through its table of
#: adapters (a look-up and a call, ~1.2k instructions: 13 a submission, with a parameter each bound)
UNSET = (
    "started_at, finished_at, worker, failed_step, error, heartbeat_at, waiting_since, schedule_id, fire_time, "
    "trigger_id, objects, waiting_for, wait_until"
).split(", ")
#: the columns a run without a value in :data:`UNSET` is written with, in the order of :data:`RUN_COLUMNS`
FRESH_COLUMNS = tuple(column for column in RUN_COLUMNS if column not in UNSET)
#: :data:`INSERT_NEW` of a run that :func:`fresh_row` writes
INSERT_FRESH = insert_new(FRESH_COLUMNS)
_UNSET_OF = operator.attrgetter(*UNSET)
_NOTHING_UNSET = (None,) * len(UNSET)
_FRESH_OF = operator.attrgetter(*FRESH_COLUMNS)
_FRESH_PARAMS, _FRESH_STATE = FRESH_COLUMNS.index("params"), FRESH_COLUMNS.index("state")


def fresh_row(run: Run) -> list[Any] | None:
    """The values of :data:`FRESH_COLUMNS` of ``run`` (its parameters as JSON, its state's value), as
    :func:`~nectar.registry.schema.run_row` writes them, when it has none in :data:`UNSET`; else None."""
    if _UNSET_OF(run) != _NOTHING_UNSET:
        return None
    row = list(_FRESH_OF(run))
    row[_FRESH_PARAMS] = params_json(run.params)
    row[_FRESH_STATE] = run.state._value_  # the member's own (Enum's ``value`` is a Python property: a call a read)
    return row


#: a new run's insert and its row (:func:`new_run_insert`'s)
Insert = tuple[str, list[Any]]


def new_run_insert(run: Run) -> Insert:
    """:data:`INSERT_NEW` of ``run`` and its row: :data:`INSERT_FRESH`'s when it has nothing in :data:`UNSET`."""
    row = fresh_row(run)
    return (INSERT_NEW, run_row(run)) if row is None else (INSERT_FRESH, row)


#: a PENDING run due now (one a claim takes)
DUE = "SELECT 1 FROM runs WHERE state = 'PENDING' AND not_before <= ? LIMIT 1"
#: when a PENDING run is due: one due now (its time, not after now: the queue's order, no scan of the queue), else
#: the one due first (COALESCE reads its second query only when the first found none, in SQLite and PostgreSQL)
NEXT_DUE = (
    "SELECT COALESCE((SELECT not_before FROM runs WHERE state = 'PENDING' AND not_before <= ? LIMIT 1), "
    "(SELECT MIN(not_before) FROM runs WHERE state = 'PENDING'))"
)


#: a step's row written (its place: its run's steps so far) where ``condition`` holds (:meth:`_write_steps`)
STEP_WRITE = (
    f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) "
    "SELECT ?,?,?,?,?,?,?,?, (SELECT COUNT(*) FROM steps WHERE run_id = ?) WHERE {condition} "
    "ON CONFLICT(run_id, task_id) DO UPDATE SET state = excluded.state, "
    "executed = {greatest}(steps.executed, excluded.executed), "
    # its error is its state's: a step that failed in attempt 1 and runs again carries none
    "error = excluded.error, updated_at = excluded.updated_at"
)


#: Each condition of a step write reads the run's row with the dialect's :attr:`SqlRunStore.SHARE` (``{share}``): the
#: check and the write agree, a cancel or a reclaim committed in between is waited for and seen.
#: A step written unless its run was cancelled (or is not there): a cancelled run's steps are final, what its
#: interrupted worker says late is not written
UNCANCELLED = "EXISTS (SELECT 1 FROM runs WHERE id = ? AND state <> 'CANCELLED'{share})"
#: a step written only while the attempt that tells it owns its run: its row count is the fence's answer
OWNED_BY = "EXISTS (SELECT 1 FROM runs WHERE id = ? AND attempt = ? AND state = 'RUNNING'{share})"
#: the RUNNING steps an attempt left, failed while no later claim has taken the run (nor was it cancelled): its
#: ``started_at`` is still the attempt's (a claim sets it; a requeue, which gives the attempt's number back, does not)
FAIL_RUNNING = (
    "UPDATE steps SET state = 'FAILED', error = ?, updated_at = ? WHERE run_id = ? AND state = 'RUNNING' "
    "AND EXISTS (SELECT 1 FROM runs WHERE id = ? AND started_at = ? AND state <> 'CANCELLED'{share})"
)


def queue_full(ahead: int) -> QueueFull:
    """The refusal of a run with ``ahead`` runs queued, the most accepted."""
    return QueueFull(f"{ahead} runs are queued, the most this service accepts", retry_after=0)


class SqlRunStore(SqlReads):
    """The registry in SQL that SQLite and PostgreSQL both speak: its writes, each in one transaction."""

    #: how a step write reads its run's row so that no other writer changes it before the write commits: nothing
    #: where a writer holds the whole file (SQLite), else a shared lock on the row (a change begun is waited for, and
    #: the condition is checked again on the row as it committed)
    SHARE = ""

    def _queue_unless_active(self, db: Any, run: Run, made: Insert | None = None) -> Run:
        """Queue ``run`` unless a run of its key is active: ``run`` itself, or that active run (``made``: its insert
        and row, if made before the caller's transaction).

        The index of one active run per key decides, in one statement: not a look then an insert, which two writers
        of the same key could both pass under PostgreSQL's READ COMMITTED (one then failing on the index). A run it
        finds is looked up; it may end in between, and the run is then tried again.
        """
        insert, row = made or new_run_insert(run)
        for _ in range(3):
            if self._exec(db, insert, row).rowcount == 1:
                return run
            active = self._select(db, ACTIVE_OF_KEY, run.key)
            if active is not None:
                return active
        raise QueueFull(f"the run for {run.key} keeps changing; try again", retry_after=1)

    def _submit(self, db: Any, run: Run, max_pending: int | None, made: Insert | None = None) -> Run:
        """:meth:`submit` inside ``db``'s transaction: ``run`` queued, or the active run of its key; QueueFull when
        ``max_pending`` runs are queued ahead of it (whoever raises it rolls the insert back)."""
        queued = self._queue_unless_active(db, run, made)
        if queued is run and max_pending is not None:
            # the count the database keeps, its row locked until this transaction ends: whoever submits at once
            # reads it after this one
            ahead = int(self._scalar(db, f"{QUEUED}{self.LOCK}")) - (0 if self.COUNTED_AT_COMMIT else 1)
            if ahead >= max_pending:
                raise queue_full(ahead)
        return queued

    def submit(self, run: Run, max_pending: int | None = None) -> tuple[Run, bool]:
        with self._db() as db:
            queued = self._submit(db, run, max_pending)
        if queued is not run:
            return queued, False
        self._queued()
        return run, True

    def submit_all(
        self, asked: Sequence[tuple[Run, int | None]], made: Sequence[Insert] | None = None
    ) -> list[Outcome[tuple[Run, bool]]]:
        """Each run of ``asked`` (with its ``max_pending``) submitted as :meth:`submit` submits it, all in one
        transaction, in order: each its answer, or the QueueFull that refused it (nothing of it written). ``made``:
        each one's insert and row (:func:`new_run_insert`), made before the caller took its turn, if it did.

        A run alone is written by :meth:`_submit_alone` (as :meth:`submit` writes it, unless a dialect has a cheaper
        way; its QueueFull raised, nothing of it written). In a turn of several, the PENDING runs ahead are read once,
        before the first bounded run (the count's row locked until the transaction ends), and counted on here as its
        runs are queued: a run past the bound is refused before its insert, so that none is rolled back. One statement
        a run (its insert; an identical active run's look-up too) where each had its insert, a read of the count and a
        savepoint around both (4 statements)."""
        if len(asked) == 1:
            ((run, max_pending),) = asked
            queued = self._submit_alone(run, max_pending, made[0] if made else None)
            outcomes: list[Outcome[tuple[Run, bool]]] = [((queued, queued is run), None)]
        else:
            ahead: list[int] = []
            with self._submit_db() as db:
                inserts: Sequence[Insert | None] = made or [None] * len(asked)
                outcomes = [
                    self._submit_counted(db, run, max_pending, ahead, insert)
                    for (run, max_pending), insert in zip(asked, inserts, strict=True)
                ]
        if any([answer is not None and answer[1] for answer, _ in outcomes]):  # (a generator left: an exception)
            self._queued()
        return outcomes

    def _submit_alone(self, run: Run, max_pending: int | None, made: Insert | None = None) -> Run:
        """A run alone in its turn submitted as :meth:`submit` submits it: ``run`` queued, or the active run of its
        key; QueueFull (nothing written) when ``max_pending`` runs are queued ahead of it."""
        with self._submit_db() as db:
            return self._submit(db, run, max_pending, made)

    def _submit_db(self) -> AbstractContextManager[Any]:
        """The transaction of the submissions of one turn (:meth:`submit_all`'s): :meth:`_db`'s, unless a dialect's
        caller of :meth:`submit_all` already holds what ``_db`` takes before its transaction."""
        return self._db()

    def _submit_counted(
        self, db: Any, run: Run, max_pending: int | None, ahead: list[int], made: Insert | None = None
    ) -> Outcome[tuple[Run, bool]]:
        """``run`` submitted in a turn of several, inside ``db``'s transaction: ``ahead`` holds the PENDING runs
        counted so far in it (empty until a bounded run reads them), one more for each run it queues."""
        if max_pending is not None and not ahead:
            ahead.append(int(self._scalar(db, f"{QUEUED}{self.LOCK}")))
        if max_pending is not None and ahead[0] >= max_pending:
            active = self._select(db, ACTIVE_OF_KEY, run.key)  # answered even with the queue full
            if active is None:
                return None, queue_full(ahead[0])
            return (active, False), None
        queued = self._queue_unless_active(db, run, made)
        if queued is run and ahead and run.state == RunState.PENDING:
            ahead[0] += 1
        return (queued, queued is run), None

    def _queue_or_join(self, db: Any, run: Run, maker: str, values: Sequence[Any]) -> Run:
        """Queue ``run`` unless a run of its key is active, which is answered instead; an active run that no
        schedule nor trigger made is now their run too (``maker``: its assignments of their columns, ``values``)."""
        active = self._queue_unless_active(db, run)
        if active is not run and active.schedule_id is None and active.trigger_id is None:
            self._exec(db, f"UPDATE runs SET {maker} WHERE id = ?", (*values, active.id))
        return active

    def _queued(self) -> None:
        """A run became claimable (a store whose workers can be woken wakes them)."""

    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        if run_id is None and not self._due(time.time()):
            return None  # the usual answer of an idle worker, without taking the write lock
        with self._db() as db:
            return self._claim(db, worker, run_id)

    def _claim(self, db: Any, worker: str, run_id: str | None) -> Run | None:
        """:meth:`claim`'s one statement, on ``db`` (whose write lock the caller holds, or which takes it as the
        statement begins): the run ``run_id`` (None: the PENDING run due first) made RUNNING in ``worker``'s name, its
        attempt counted, if it is PENDING and due now; the run as claimed, or None. Its every row read (its statement
        ended): in autocommit, the statement's end is the transaction's."""
        now = time.time()
        args: list[Any]
        if run_id:
            condition, args = "id = ?", [run_id]
        else:
            condition = (
                "id = (SELECT id FROM runs WHERE state = 'PENDING' AND not_before <= ? "
                f"ORDER BY queued_at LIMIT 1{self.SKIP_LOCKED})"
            )
            args = [now]
        rows = self._exec(
            db,
            "UPDATE runs SET state = 'RUNNING', attempt = attempt + 1, started_at = ?, heartbeat_at = ?, "
            f"worker = ? WHERE {condition} AND state = 'PENDING' AND not_before <= ? RETURNING {RUNS}",
            (now, now, worker, *args, now),
        ).fetchall()
        return run_of(rows[0]) if rows else None

    def next_due(self) -> float | None:
        now = time.time()
        due = self._read(lambda db: self._scalar(db, NEXT_DUE, (now,)))
        return None if due is None else float(due)

    def _due(self, now: float) -> bool:
        return self._read(lambda db: self._scalar(db, DUE, (now,))) is not None

    def _update_owned(self, assignments: str, args: Sequence[Any], run_id: str, attempt: int) -> bool:
        with self._db() as db:
            cursor = self._exec(db, f"UPDATE runs SET {assignments} WHERE {_OWNED}", (*args, run_id, attempt))
        return int(cursor.rowcount) == 1

    def heartbeat(
        self, run_id: str, attempt: int, worker: str | None = None, lease_timeout: float | None = None
    ) -> bool:
        now = time.time()
        assignments = "heartbeat_at = ?, worker = COALESCE(?, worker)"
        if lease_timeout is None:
            return self._update_owned(assignments, (now, worker), run_id, attempt)
        with self._db() as db:  # the usual case, a lease renewed well within its time: one statement
            held = (now, worker, run_id, attempt, now - lease_timeout)
            if int(self._exec(db, f"UPDATE runs SET {assignments} WHERE {_OWNED} AND {_HELD}", held).rowcount) == 1:
                return True
            run = self._select(db, _OWNED, run_id, attempt, lock=True)  # not ours, or silent too long: which?
            if run is None or lease_ran_out(run, now, lease_timeout, lambda: self._up_for(db)) is not None:
                return False
            self._exec(db, f"UPDATE runs SET {assignments} WHERE {_OWNED}", (now, worker, run_id, attempt))
        return True

    def complete(self, run_id: str, attempt: int, steps: Sequence[Step] = ()) -> bool:
        now = time.time()
        with self._db() as db:
            if not self._write_steps(db, steps, attempt):  # an attempt's last steps only while it owns its run
                return False
            row = self._exec(
                db,
                "UPDATE runs SET state = 'DONE', finished_at = ?, failed_step = NULL, error = NULL "
                f"WHERE {_OWNED} RETURNING started_at",
                (now, run_id, attempt),
            ).fetchone()
            if row is not None:
                self._end_attempt(db, run_id, attempt, "DONE", None, None, values(row)[0], now)
        return row is not None

    def _end_attempt(
        self,
        db: Any,
        run_id: str,
        attempt: int,
        state: str,
        failed_step: str | None,
        error: str | None,
        started_at: float | None,
        now: float,
    ) -> None:
        """Keep how ``attempt`` of the run ended, beside the run (whose own error is its last attempt's)."""
        self._exec(
            db,
            f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({param_marks(ATTEMPT_COLUMNS)}) "
            "ON CONFLICT(run_id, attempt) DO UPDATE SET state = excluded.state, failed_step = excluded.failed_step, "
            "error = excluded.error, ended_at = excluded.ended_at",
            (run_id, attempt, state, failed_step, error, started_at, now),
        )

    def requeue(
        self, run_id: str, attempt: int, delay: float = 0.0, reason: str | None = None, waiting: bool = False
    ) -> bool:
        now = time.time()
        assignments = (
            "state = 'PENDING', attempt = attempt - 1, not_before = ?, heartbeat_at = NULL, "
            "error = COALESCE(?, error), "
            + ("waiting_since = COALESCE(waiting_since, ?)" if waiting else "waiting_since = NULL")
        )
        args = (now + delay, reason, now) if waiting else (now + delay, reason)
        requeued = self._update_owned(assignments, args, run_id, attempt)
        if requeued:
            self._queued()
        return requeued

    def requeue_unbegun(self, worker: str) -> list[str]:
        def held(db: Any) -> bool:
            return self._scalar(db, "SELECT 1 FROM runs WHERE state = 'RUNNING' AND worker = ? LIMIT 1", (worker,)) == 1

        if not self._read(held):  # the usual answer (a spare let go with nothing claimed for it): no write lock taken
            return []
        with self._db() as db:
            rows = self._exec(
                db,
                "UPDATE runs SET state = 'PENDING', attempt = attempt - 1, not_before = ?, heartbeat_at = NULL, "
                "waiting_since = NULL WHERE state = 'RUNNING' AND worker = ? RETURNING id",
                (time.time(), worker),
            ).fetchall()
        if rows:
            self._queued()
        return [values(row)[0] for row in rows]

    def fail(
        self, run_id: str, attempt: int, failed_step: str | None, error: str, retryable: bool = True
    ) -> RunState | None:
        with self._db() as db:
            run = self._select(db, _OWNED, run_id, attempt, lock=True)
            state = None if run is None else self._fail(db, run, failed_step, error, retryable)
        if state == RunState.PENDING:
            self._queued()
        return state

    def _fail(self, db: Any, run: Run, failed_step: str | None, error: str, retryable: bool = True) -> RunState:
        now = time.time()
        self._end_attempt(db, run.id, run.attempt, "FAILED", failed_step, error, run.started_at, now)
        if retryable and run.attempt < run.max_attempts:
            self._exec(
                db,
                "UPDATE runs SET state = 'PENDING', not_before = ?, heartbeat_at = NULL, failed_step = ?, error = ?, "
                "waiting_since = NULL WHERE id = ?",
                (now + run.policy.delay_after(run.attempt), failed_step, error, run.id),
            )
            return RunState.PENDING
        self._exec(
            db,
            "UPDATE runs SET state = 'FAILED', finished_at = ?, heartbeat_at = NULL, failed_step = ?, error = ? "
            "WHERE id = ?",
            (now, failed_step, error, run.id),
        )
        return RunState.FAILED

    def _up_for(self, db: Any) -> float:
        """How long the registry has been answering (no heartbeat could be written before), in seconds of its own
        clock: :data:`math.inf` if always (a file any process opens)."""
        return math.inf

    def lease_silence(self, run: Run | RunStatus, lease_timeout: float) -> float | None:
        return lease_ran_out(run, time.time(), lease_timeout, lambda: self._read(self._up_for))

    def reclaim(self, lease_timeout: float, dead: Callable[[str], bool] | None = None) -> list[Run]:
        up_for: list[float] = []  # asked of the registry only when some attempt looks silent

        def lost(db: Any, run: Run, now: float) -> str | None:
            def came_up() -> float:
                up_for[:] = up_for or [self._up_for(db)]
                return up_for[0]

            silent = lease_ran_out(run, now, lease_timeout, came_up)
            if silent is not None:
                return f"no heartbeat for {silent:.0f}s"
            if dead is not None and run.worker and dead(run.worker):
                return "its process is gone"
            return None

        def suspects(db: Any) -> list[str]:
            now = time.time()
            rows = self._exec(db, f"SELECT {RUNS} FROM runs WHERE state = 'RUNNING'").fetchall()
            return [run.id for run in map(run_of, rows) if run is not None and lost(db, run, now)]

        found = self._read(suspects)
        reclaimed: list[Run] = []
        if not found:  # the usual case: no write lock taken
            return reclaimed
        with self._db() as db:
            for run_id in found:  # look again under the lock: a heartbeat may have come in between
                run = self._select(db, "id = ? AND state = 'RUNNING'", run_id, lock=True)
                why = lost(db, run, time.time()) if run is not None else None
                if run is None or why is None:
                    continue
                step = self._scalar(
                    db,
                    "SELECT task FROM steps WHERE run_id = ? AND state = 'RUNNING' ORDER BY seq DESC LIMIT 1",
                    (run.id,),
                )
                error = f"worker lost: {run.worker} ({why}) during attempt {run.attempt}"
                self._fail(db, run, step or run.task, error)
                reclaimed.append(run)
        if reclaimed:
            self._queued()
        return reclaimed

    def cancel(self, run_id: str, reason: str = "cancelled by request") -> tuple[Run, Run]:
        with self._db() as db:
            before = self._select(db, "id = ?", run_id, lock=True)
            if before is None:
                raise RunNotFound(f"no run {run_id}")
            if not before.state.active:
                raise RunFinished(f"run {run_id} has already ended: {before.state.value}")
            now = time.time()
            if before.state == RunState.RUNNING:  # its attempt ends here (its process stops within a heartbeat)
                self._end_attempt(db, run_id, before.attempt, "CANCELLED", None, reason, before.started_at, now)
            after = run_of(
                self._exec(
                    db,
                    "UPDATE runs SET state = 'CANCELLED', finished_at = ?, heartbeat_at = NULL, error = ? "
                    f"WHERE id = ? RETURNING {RUNS}",
                    (now, reason, run_id),
                ).fetchone()
            )
            self._exec(  # its steps end with it: none is left RUNNING (or waiting) for a worker that will stop
                db,
                "UPDATE steps SET state = 'CANCELLED', updated_at = ? "
                "WHERE run_id = ? AND state IN ('PENDING', 'RUNNING')",
                (now, run_id),
            )
        assert after is not None
        return before, after

    def record_steps(self, steps: Sequence[Step], attempt: int | None = None) -> bool:
        if not steps:
            return True
        with self._db() as db:
            return self._write_steps(db, steps, attempt)

    def _write_steps(self, db: Any, steps: Sequence[Step], attempt: int | None = None) -> bool:
        """Write ``steps`` on ``db`` unless their run was cancelled; with ``attempt``, each only while that attempt
        owns its run: False, no step written from the first refused on, once it does not."""
        condition = (UNCANCELLED if attempt is None else OWNED_BY).format(share=self.SHARE)
        text = STEP_WRITE.format(condition=condition, greatest=self.GREATEST)
        fence = () if attempt is None else (attempt,)
        for step in steps:
            cursor = self._exec(db, text, (*_step_row(step), step.run_id, step.run_id, *fence))
            if attempt is not None and int(cursor.rowcount) != 1:
                return False
        return True

    def fail_running_steps(self, run: Run, error: str) -> int:
        with self._db() as db:
            text = FAIL_RUNNING.format(share=self.SHARE)
            return int(self._exec(db, text, (error, time.time(), run.id, run.id, run.started_at)).rowcount)

    def import_runs(self, runs: Iterable[Run], steps: Iterable[Step] = ()) -> None:
        """Write runs and their steps as they are, in one transaction (a bulk load: a benchmark's population).

        Neither the one active run per key nor a step's run is checked beyond what the tables refuse; the
        steps of a run take their places in the order given. The waiting workers are told after it, as after a
        submission (:meth:`_queued`): a worker that found no run looks again only when told (a load of ended runs only
        costs each a look that finds none).
        """
        places: dict[str, int] = {}
        step_rows = []
        for step in steps:
            place = places[step.run_id] = places.get(step.run_id, -1) + 1
            step_rows.append((*_step_row(step), place))
        with self._db() as db:
            db.cursor().executemany(
                self._sql(f"INSERT INTO runs ({RUNS}) VALUES ({param_marks(RUN_COLUMNS)})"), map(run_row, runs)
            )
            db.cursor().executemany(
                self._sql(f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) VALUES ({param_marks(STEP_COLUMNS)})"),
                step_rows,
            )
        self._queued()


def _step_row(step: Step) -> tuple[Any, ...]:
    """A step's values in the order of :data:`STEP_COLUMNS`, without its place (``seq``)."""
    return (step.run_id, step.task_id, step.task, step.key, step.state, int(step.executed), step.error, step.updated_at)
