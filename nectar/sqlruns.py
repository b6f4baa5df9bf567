"""The run registry in SQL: one dialect-neutral implementation of :class:`~nectar.runs.RunStore`, and SQLite's.

``SqlRunStore`` holds every query (``?`` for each parameter, standard SQL that SQLite and PostgreSQL
both run); a subclass supplies connections, transactions and migrations. ``SQLiteRunStore``
keeps the registry in one SQLite file in the data folder (WAL, one connection per thread and
process, a schema version that upgrades itself).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from nectar.errors import QueueFull, RunFinished, RunNotFound
from nectar.runs import Durations, Run, RunFilter, RunState, RunStore, Step

#: schema version n is reached by applying _MIGRATIONS[n-1]; the version lives in PRAGMA user_version
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            chain_type TEXT NOT NULL,
            chain TEXT NOT NULL,
            task TEXT NOT NULL,
            params TEXT NOT NULL,
            task_id TEXT NOT NULL,
            state TEXT NOT NULL,
            queued_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            worker TEXT,
            failed_step TEXT,
            error TEXT
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_key ON runs(key) WHERE state IN ('PENDING', 'RUNNING')",
        "CREATE INDEX IF NOT EXISTS runs_by_key ON runs(key, queued_at)",
        "CREATE INDEX IF NOT EXISTS runs_queue ON runs(state, queued_at)",
        """CREATE TABLE IF NOT EXISTS steps (
            run_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            task TEXT NOT NULL,
            key TEXT,
            state TEXT NOT NULL,
            executed INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at REAL NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (run_id, task_id)
        )""",
    ),
    (  # 2: attempts, retry policy, leases
        "ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE runs ADD COLUMN retry_delay REAL NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN retry_backoff REAL NOT NULL DEFAULT 2",
        "ALTER TABLE runs ADD COLUMN not_before REAL NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN heartbeat_at REAL",
    ),
    (  # 3: listing runs newest first, by task or by state
        "CREATE INDEX IF NOT EXISTS runs_by_time ON runs(queued_at)",
        "CREATE INDEX IF NOT EXISTS runs_by_task ON runs(chain_type, chain, task, queued_at)",
    ),
    ("ALTER TABLE runs ADD COLUMN waiting_since REAL",),  # 4: since when a run waits for luigid's grant
)
SCHEMA_VERSION = len(_MIGRATIONS)
_FIELDS = (
    "id, key, chain_type, chain, task, params, task_id, state, queued_at, started_at, finished_at, "
    "worker, failed_step, error, attempt, max_attempts, retry_delay, retry_backoff, not_before, heartbeat_at, "
    "waiting_since"
).split(", ")
_RUN_COLUMNS = ", ".join(_FIELDS)
_OWNED = "id = ? AND attempt = ? AND state = 'RUNNING'"


def _run(row: Mapping[str, Any] | sqlite3.Row | None) -> Run | None:
    if row is None:
        return None
    values = dict(row)
    values["params"] = json.loads(values["params"])
    values["state"] = RunState(values["state"])
    return Run(**values)


class SqlRunStore(RunStore):
    """The registry's logic in SQL that SQLite and PostgreSQL both speak, with ``?`` for each parameter.

    A subclass gives a connection for the calling thread and process (:meth:`_connection`), a
    transaction that serialises writers to the rows it touches (:meth:`_db`), and its dialect:
    :attr:`LOCK` locks the rows a write transaction selects, :attr:`SKIP_LOCKED` also skips the
    rows another transaction holds (a claim), :attr:`GREATEST` names the two-value maximum.
    """

    LOCK = ""
    SKIP_LOCKED = ""
    GREATEST = "MAX"

    @abstractmethod
    def _connection(self) -> Any:
        """A connection of this thread and process, in autocommit mode, whose rows are mappings."""

    @abstractmethod
    def _db(self) -> AbstractContextManager[Any]:
        """A connection inside one write transaction."""

    def _sql(self, text: str) -> str:
        """``text`` with its ``?`` parameter markers in this store's own style."""
        return text

    def _exec(self, db: Any, text: str, args: Sequence[Any] = ()) -> Any:
        return db.execute(self._sql(text), tuple(args))

    def _scalar(self, db: Any, text: str, args: Sequence[Any] = ()) -> Any:
        row = self._exec(db, text, args).fetchone()
        return None if row is None else _values(row)[0]

    def _select(self, db: Any, where: str, *args: Any, lock: bool = False) -> Run | None:
        text = f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where}{self.LOCK if lock else ''}"
        return _run(self._exec(db, text, args).fetchone())

    def _insert(self, db: Any, run: Run) -> None:
        values = [getattr(run, name) for name in _FIELDS]
        values[_FIELDS.index("params")] = json.dumps(dict(run.params))
        values[_FIELDS.index("state")] = run.state.value
        self._exec(db, f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})", values)

    def submit(self, run: Run, max_pending: int | None = None) -> tuple[Run, bool]:
        with self._db() as db:
            existing = self._select(db, "key = ? AND state IN ('PENDING', 'RUNNING')", run.key)
            if existing is not None:
                return existing, False
            if max_pending is not None:
                pending = self._scalar(db, "SELECT COUNT(*) FROM runs WHERE state = 'PENDING'")
                if pending >= max_pending:
                    raise QueueFull(f"{pending} runs are queued, the most this service accepts", retry_after=0)
            self._insert(db, run)
        self._queued()
        return run, True

    def _queued(self) -> None:
        """A run became claimable (a store whose workers can be woken wakes them)."""

    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        now = time.time()
        args: list[Any]
        if run_id:
            where, args = "id = ?", [run_id]
        else:
            due = "SELECT 1 FROM runs WHERE state = 'PENDING' AND not_before <= ? LIMIT 1"
            if self._scalar(self._connection(), due, (now,)) is None:
                return None  # the usual answer of an idle worker, without taking the write lock
            where = (
                "id = (SELECT id FROM runs WHERE state = 'PENDING' AND not_before <= ? "
                f"ORDER BY queued_at LIMIT 1{self.SKIP_LOCKED})"
            )
            args = [now]
        with self._db() as db:
            row = self._exec(
                db,
                "UPDATE runs SET state = 'RUNNING', attempt = attempt + 1, started_at = ?, heartbeat_at = ?, "
                f"worker = ? WHERE {where} AND state = 'PENDING' AND not_before <= ? RETURNING {_RUN_COLUMNS}",
                (now, now, worker, *args, now),
            ).fetchone()
        return _run(row)

    def _update_owned(self, assignments: str, args: Sequence[Any], run_id: str, attempt: int) -> bool:
        with self._db() as db:
            cursor = self._exec(db, f"UPDATE runs SET {assignments} WHERE {_OWNED}", (*args, run_id, attempt))
        return int(cursor.rowcount) == 1

    def heartbeat(self, run_id: str, attempt: int, worker: str | None = None) -> bool:
        assignments = "heartbeat_at = ?, worker = COALESCE(?, worker)"
        return self._update_owned(assignments, (time.time(), worker), run_id, attempt)

    def complete(self, run_id: str, attempt: int) -> bool:
        assignments = "state = 'DONE', finished_at = ?, failed_step = NULL, error = NULL"
        return self._update_owned(assignments, (time.time(),), run_id, attempt)

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

    def _up_since(self, db: Any) -> float:
        """Since when the registry has been answering (no heartbeat could be written before): 0 if always."""
        return 0.0

    def reclaim(self, lease_timeout: float, dead: Callable[[str], bool] | None = None) -> list[Run]:
        up_since: list[float] = []  # asked of the registry only when some attempt looks silent

        def lost(run: Run, now: float) -> str | None:
            silent = now - (run.heartbeat_at or run.started_at or 0)
            if silent > lease_timeout:
                # a registry that was down could not take heartbeats: silence counts from when it came back
                up_since[:] = up_since or [self._up_since(self._connection())]
                silent = min(silent, now - up_since[0])
            if silent > lease_timeout:
                return f"no heartbeat for {silent:.0f}s"
            if dead is not None and run.worker and dead(run.worker):
                return "its process is gone"
            return None

        now = time.time()
        rows = self._exec(self._connection(), f"SELECT {_RUN_COLUMNS} FROM runs WHERE state = 'RUNNING'").fetchall()
        suspects = [run.id for run in map(_run, rows) if run is not None and lost(run, now)]
        reclaimed: list[Run] = []
        if not suspects:  # the usual case: no write lock taken
            return reclaimed
        with self._db() as db:
            for run_id in suspects:  # look again under the lock: a heartbeat may have come in between
                run = self._select(db, "id = ? AND state = 'RUNNING'", run_id, lock=True)
                why = lost(run, time.time()) if run is not None else None
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
            after = _run(
                self._exec(
                    db,
                    "UPDATE runs SET state = 'CANCELLED', finished_at = ?, heartbeat_at = NULL, error = ? "
                    f"WHERE id = ? RETURNING {_RUN_COLUMNS}",
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

    def get(self, run_id: str) -> Run | None:
        return self._select(self._connection(), "id = ?", run_id)

    def latest(self, key: str) -> Run | None:
        return self._select(self._connection(), "key = ? ORDER BY queued_at DESC LIMIT 1", key)

    def find(self, where: RunFilter, offset: int = 0, limit: int = 50) -> tuple[list[Run], int]:
        condition, args = where.where()
        db = self._connection()
        total = int(self._scalar(db, f"SELECT COUNT(*) FROM runs WHERE {condition}", args))
        rows = self._exec(
            db,
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY queued_at DESC, id LIMIT ? OFFSET ?",
            [*args, max(0, limit), max(0, offset)],
        ).fetchall()
        return [run for run in map(_run, rows) if run is not None], total

    def count_by_state(self) -> dict[RunState, int]:
        rows = self._exec(self._connection(), "SELECT state, COUNT(*) AS n FROM runs GROUP BY state").fetchall()
        counts = {state: 0 for state in RunState}
        counts.update({RunState(state): int(n) for state, n in map(_values, rows)})
        return counts

    def durations(self, bounds: tuple[float, ...]) -> dict[str, Durations]:
        within = "".join(
            f", SUM(CASE WHEN finished_at - started_at <= ? THEN 1 ELSE 0 END) AS b{i}" for i in range(len(bounds))
        )
        rows = self._exec(
            self._connection(),
            "SELECT chain_type || '/' || chain || '/' || task AS ref, COUNT(*) AS n, SUM(finished_at - started_at) AS s"
            f"{within} FROM runs WHERE state IN ('DONE', 'FAILED') AND started_at IS NOT NULL "
            "AND finished_at IS NOT NULL GROUP BY chain_type, chain, task",
            bounds,
        ).fetchall()
        found = {}
        for row in map(_values, rows):
            found[row[0]] = Durations(tuple(int(n) for n in row[3:]), int(row[1]), float(row[2]))
        return found

    def record_steps(self, steps: Sequence[Step]) -> None:
        if not steps:
            return
        with self._db() as db:
            for step in steps:
                self._exec(
                    db,
                    # a cancelled run's steps are final: what its interrupted worker says late is not written
                    "INSERT INTO steps (run_id, task_id, task, key, state, executed, error, updated_at, seq) "
                    "SELECT ?,?,?,?,?,?,?,?, (SELECT COUNT(*) FROM steps WHERE run_id = ?) "
                    "WHERE NOT EXISTS (SELECT 1 FROM runs WHERE id = ? AND state = 'CANCELLED') "
                    "ON CONFLICT(run_id, task_id) DO UPDATE SET state = excluded.state, "
                    f"executed = {self.GREATEST}(steps.executed, excluded.executed), "
                    "error = COALESCE(excluded.error, steps.error), updated_at = excluded.updated_at",
                    (
                        step.run_id,
                        step.task_id,
                        step.task,
                        step.key,
                        step.state,
                        int(step.executed),
                        step.error,
                        step.updated_at,
                        step.run_id,
                        step.run_id,
                    ),
                )

    def steps(self, run_id: str) -> list[Step]:
        rows = self._exec(
            self._connection(),
            "SELECT run_id, task_id, task, key, state, executed, error, updated_at FROM steps "
            "WHERE run_id = ? ORDER BY seq DESC",
            (run_id,),
        ).fetchall()
        return [Step(**{**dict(row), "executed": bool(row["executed"])}) for row in rows]

    def count(self, state: RunState | None = None) -> int:
        if state is None:
            return int(self._scalar(self._connection(), "SELECT COUNT(*) FROM runs"))
        return int(self._scalar(self._connection(), "SELECT COUNT(*) FROM runs WHERE state = ?", (state.value,)))


def refuse_newer(found: int, known: int, where: str) -> None:
    """Stop a process whose release is older than the registry's schema (a rollback must not undo an upgrade)."""
    if found > known:
        raise RuntimeError(
            f"the run registry {where} has schema version {found}, newer than this release's {known}: "
            "run the newer release (or restore the registry from before the upgrade)"
        )


def _values(row: Any) -> tuple[Any, ...]:
    """A row's values in column order, whether the row is a mapping (psycopg) or a sqlite3.Row."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


class SQLiteRunStore(SqlRunStore):
    """The registry in one SQLite file; safe across threads and forked processes of one machine."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never share a connection across fork
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives any process crash
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one IMMEDIATE transaction (so readers never block on writers)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, one transaction, whoever else opens it at once."""
        with self._db() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
                columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                version = 2 if "attempt" in columns else 1  # written before versions were recorded
            refuse_newer(version, SCHEMA_VERSION, str(self.path))
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def check(self) -> str:
        self._connection().execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        return f"sqlite {self.path}"

    #: seconds between two looks at whether another connection committed (a read of shared memory, no I/O)
    WAKE_INTERVAL = 0.002

    def wait_for_work(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, or as soon as another connection commits (a submission, say)."""
        conn = self._connection()
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(self.WAKE_INTERVAL)
            if conn.execute("PRAGMA data_version").fetchone()[0] != seen:
                return
