"""The run registry: every run submitted, its state, and the state of each step of its chain.

``RunStore`` is the interface (so a shared database can serve several machines later);
``SQLiteRunStore`` keeps it in one SQLite file in the data folder (WAL, one connection per
thread and process). At most one PENDING or RUNNING run exists per key: a second identical
submission gets the first run back.

Run states are luigi's words: PENDING (queued), RUNNING, DONE, FAILED.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"

    @property
    def active(self) -> bool:
        return self in (RunState.PENDING, RunState.RUNNING)


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
    worker: str | None = None
    failed_step: str | None = None
    error: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.chain_type}/{self.chain}/{self.task}"

    @classmethod
    def new(cls, key: str, chain_type: str, chain: str, task: str, params: Mapping[str, str], task_id: str) -> Run:
        return cls(uuid.uuid4().hex, key, chain_type, chain, task, dict(params), task_id)


@dataclass(frozen=True)
class Step:
    """One task of a run's chain, as the run's worker saw it."""

    run_id: str
    task_id: str
    task: str
    key: str | None
    state: str
    executed: bool = False
    error: str | None = None
    updated_at: float = field(default_factory=time.time)


class RunStore(ABC):
    """Where runs are queued, claimed and finished."""

    @abstractmethod
    def submit(self, run: Run) -> tuple[Run, bool]:
        """Queue ``run`` unless a run for its key is active; answer (the run, whether new)."""

    @abstractmethod
    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        """Move the oldest PENDING run (or ``run_id``) to RUNNING for ``worker``."""

    @abstractmethod
    def finish(self, run_id: str, state: RunState, failed_step: str | None = None, error: str | None = None) -> None:
        """Record the end of a RUNNING run (no effect on a run already finished)."""

    @abstractmethod
    def requeue(self, run_id: str) -> None:
        """Put a RUNNING run back in the queue (its worker stopped before it ended)."""

    @abstractmethod
    def get(self, run_id: str) -> Run | None: ...

    @abstractmethod
    def latest(self, key: str) -> Run | None:
        """The most recently queued run for a key."""

    @abstractmethod
    def record_step(self, step: Step) -> None: ...

    @abstractmethod
    def steps(self, run_id: str) -> list[Step]: ...

    @abstractmethod
    def count(self, state: RunState | None = None) -> int: ...

    @abstractmethod
    def check(self) -> str:
        """Raise if the registry cannot be used; else describe it."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
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
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_key ON runs(key) WHERE state IN ('PENDING', 'RUNNING');
CREATE INDEX IF NOT EXISTS runs_by_key ON runs(key, queued_at);
CREATE INDEX IF NOT EXISTS runs_queue ON runs(state, queued_at);
CREATE TABLE IF NOT EXISTS steps (
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
);
"""
_RUN_COLUMNS = (
    "id, key, chain_type, chain, task, params, task_id, state, queued_at, started_at, finished_at, "
    "worker, failed_step, error"
)


def _run(row: sqlite3.Row | None) -> Run | None:
    if row is None:
        return None
    values = dict(row)
    values["params"] = json.loads(values["params"])
    values["state"] = RunState(values["state"])
    return Run(**values)


class SQLiteRunStore(RunStore):
    """The registry in one SQLite file; safe across threads and forked processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never share a connection across fork
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
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

    def submit(self, run: Run) -> tuple[Run, bool]:
        with self._db() as db:
            cursor = db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(key) WHERE state IN ('PENDING', 'RUNNING') DO NOTHING",
                (
                    run.id,
                    run.key,
                    run.chain_type,
                    run.chain,
                    run.task,
                    json.dumps(dict(run.params)),
                    run.task_id,
                    run.state.value,
                    run.queued_at,
                    run.started_at,
                    run.finished_at,
                    run.worker,
                    run.failed_step,
                    run.error,
                ),
            )
            if cursor.rowcount == 1:
                return run, True
            row = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE key = ? AND state IN ('PENDING', 'RUNNING')", (run.key,)
            ).fetchone()
        existing = _run(row)
        assert existing is not None
        return existing, False

    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        where = "id = ?" if run_id else "id = (SELECT id FROM runs WHERE state = 'PENDING' ORDER BY queued_at LIMIT 1)"
        with self._db() as db:
            row = db.execute(
                f"UPDATE runs SET state = 'RUNNING', started_at = ?, worker = ? "
                f"WHERE {where} AND state = 'PENDING' RETURNING {_RUN_COLUMNS}",
                (time.time(), worker, *([run_id] if run_id else [])),
            ).fetchone()
        return _run(row)

    def finish(self, run_id: str, state: RunState, failed_step: str | None = None, error: str | None = None) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE runs SET state = ?, finished_at = ?, failed_step = ?, error = ? "
                "WHERE id = ? AND state IN ('PENDING', 'RUNNING')",
                (state.value, time.time(), failed_step, error, run_id),
            )

    def requeue(self, run_id: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE runs SET state = 'PENDING', started_at = NULL, worker = NULL "
                "WHERE id = ? AND state = 'RUNNING'",
                (run_id,),
            )

    def get(self, run_id: str) -> Run | None:
        row = self._connection().execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row)

    def latest(self, key: str) -> Run | None:
        row = (
            self._connection()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE key = ? ORDER BY queued_at DESC LIMIT 1", (key,))
            .fetchone()
        )
        return _run(row)

    def record_step(self, step: Step) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO steps (run_id, task_id, task, key, state, executed, error, updated_at, seq) "
                "VALUES (?,?,?,?,?,?,?,?, (SELECT COUNT(*) FROM steps WHERE run_id = ?)) "
                "ON CONFLICT(run_id, task_id) DO UPDATE SET state = excluded.state, "
                "executed = MAX(steps.executed, excluded.executed), "
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
                ),
            )

    def steps(self, run_id: str) -> list[Step]:
        rows = (
            self._connection()
            .execute(
                "SELECT run_id, task_id, task, key, state, executed, error, updated_at FROM steps "
                "WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
            .fetchall()
        )
        return [Step(**{**dict(row), "executed": bool(row["executed"])}) for row in rows]

    def count(self, state: RunState | None = None) -> int:
        if state is None:
            row = self._connection().execute("SELECT COUNT(*) FROM runs").fetchone()
        else:
            row = self._connection().execute("SELECT COUNT(*) FROM runs WHERE state = ?", (state.value,)).fetchone()
        return int(row[0])

    def check(self) -> str:
        self._connection().execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        return f"sqlite {self.path}"


def open_run_store(path: Path) -> RunStore:
    return SQLiteRunStore(path)


def jsonable_run(run: Run) -> dict[str, Any]:
    """A run as plain JSON-able values."""
    return {
        "id": run.id,
        "key": run.key,
        "task": run.ref,
        "params": dict(run.params),
        "task_id": run.task_id,
        "state": run.state.value,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "worker": run.worker,
        "failed_step": run.failed_step,
        "error": run.error,
    }
