"""The run registry on PostgreSQL, shared by the API and the workers of every machine.

Same logic as SQLite's (:class:`nectar.sqlruns.SqlRunStore`), with PostgreSQL's concurrency:
workers claim with ``SELECT ... FOR UPDATE SKIP LOCKED`` (two workers never wait on, nor take,
the same run), writes lock only the rows they change, and a queued or requeued run sends a
``NOTIFY`` that wakes idle workers at once (``LISTEN``), so they may poll the table rarely.
The schema carries its version in ``nectar_schema`` and upgrades itself under an advisory lock.
While the database cannot be reached every call raises :class:`~nectar.errors.RegistryUnavailable`
(a 503 in the API; workers wait), and the next call after it is back connects again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from nectar.errors import QueueFull, RegistryUnavailable
from nectar.runs import Run
from nectar.sqlruns import SqlRunStore, refuse_newer

CHANNEL = "nectar_runs"
#: an arbitrary key for pg_advisory_xact_lock: one migration at a time, whoever starts at once
MIGRATION_LOCK = 0x6E65637461

#: schema version n is reached by applying _MIGRATIONS[n-1]
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL,
            chain_type TEXT NOT NULL,
            chain TEXT NOT NULL,
            task TEXT NOT NULL,
            params TEXT NOT NULL,
            task_id TEXT NOT NULL,
            state TEXT NOT NULL,
            queued_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            worker TEXT,
            failed_step TEXT,
            error TEXT,
            attempt INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 1,
            retry_delay DOUBLE PRECISION NOT NULL DEFAULT 0,
            retry_backoff DOUBLE PRECISION NOT NULL DEFAULT 2,
            not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
            heartbeat_at DOUBLE PRECISION
        )""",
        "CREATE UNIQUE INDEX runs_one_active_per_key ON runs(key) WHERE state IN ('PENDING', 'RUNNING')",
        "CREATE INDEX runs_by_key ON runs(key, queued_at)",
        "CREATE INDEX runs_queue ON runs(state, queued_at)",
        "CREATE INDEX runs_by_time ON runs(queued_at)",
        "CREATE INDEX runs_by_task ON runs(chain_type, chain, task, queued_at)",
        """CREATE TABLE steps (
            run_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            task TEXT NOT NULL,
            key TEXT,
            state TEXT NOT NULL,
            executed INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at DOUBLE PRECISION NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (run_id, task_id)
        )""",
    ),
    ("ALTER TABLE runs ADD COLUMN waiting_since DOUBLE PRECISION",),  # 2: since when a run waits for luigid's grant
)
SCHEMA_VERSION = len(_MIGRATIONS)


class PostgresRunStore(SqlRunStore):
    """The registry in a PostgreSQL database; safe across threads, processes and machines."""

    LOCK = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    GREATEST = "GREATEST"

    def __init__(self, url: str, connect_timeout: float = 10) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_pid = 0
        self._migrate()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.OperationalError as exc:
            raise RegistryUnavailable(f"PostgreSQL cannot be reached: {_first_line(exc)}") from exc

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or self._local.pid != os.getpid():  # never share a connection across fork
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _fresh(self, broken: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        """This thread's connection in place of ``broken`` (the server restarted, say)."""
        if getattr(self._local, "conn", None) is broken:
            self._local.conn = None
        return self._connection()

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._connection()
        try:
            with ExitStack() as stack:
                try:
                    stack.enter_context(conn.transaction())
                except psycopg.OperationalError:
                    if not conn.broken:
                        raise
                    conn = self._fresh(conn)  # BEGIN failed: nothing was done, so once more on a new connection
                    stack.enter_context(conn.transaction())
                yield conn
        except psycopg.OperationalError as exc:  # broke within the transaction: rolled back; the next call reconnects
            raise RegistryUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}") from exc

    def _exec(self, db: Any, text: str, args: Any = ()) -> Any:
        idle = db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # a statement of its own
        try:
            try:
                return super()._exec(db, text, args)
            except psycopg.OperationalError:
                if not (idle and db.broken):
                    raise
                return super()._exec(self._fresh(db), text, args)  # a read on a connection the server had cut
        except psycopg.OperationalError as exc:
            raise RegistryUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}") from exc

    def _up_since(self, db: Any) -> float:
        """When the server (re)started: a crash and restart cost every running attempt its heartbeats."""
        return float(self._scalar(db, "SELECT EXTRACT(EPOCH FROM pg_postmaster_start_time())"))

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _migrate(self) -> None:
        with self._db() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS nectar_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM nectar_schema").fetchone()
            version = int(row["version"]) if row else 0
            refuse_newer(version, SCHEMA_VERSION, "in PostgreSQL")
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO nectar_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                db.execute("UPDATE nectar_schema SET version = %s", (SCHEMA_VERSION,))

    def submit(self, run: Run, max_pending: int | None = None) -> tuple[Run, bool]:
        """As SQLite's, but two identical submissions may race to insert: the loser answers the winner's run."""
        for _ in range(5):
            try:
                return super().submit(run, max_pending)
            except psycopg.errors.UniqueViolation:
                continue  # an identical run was inserted meanwhile: look again
        raise QueueFull(f"the run for {run.key} keeps changing; try again", retry_after=1)

    def _queued(self) -> None:
        try:
            self._connection().execute(f"NOTIFY {CHANNEL}")
        except (psycopg.OperationalError, RegistryUnavailable):
            pass  # the run is queued all the same: workers also look for work on their own

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until a run is queued anywhere (a NOTIFY) or ``timeout`` seconds pass."""
        listener = self._listen()
        if listener is None:
            super().wait_for_work(timeout)
            return
        try:
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.OperationalError:
            self._listener = None  # the database went away: reconnect on the next wait
            super().wait_for_work(timeout)

    def _listen(self) -> psycopg.Connection[Any] | None:
        if self._listener is None or self._listener.closed or self._listener_pid != os.getpid():
            try:
                self._listener = self._connect()
                self._listener.execute(f"LISTEN {CHANNEL}")
                self._listener_pid = os.getpid()
            except (psycopg.OperationalError, RegistryUnavailable):
                self._listener = None
        return self._listener

    def check(self) -> str:
        self._exec(self._connection(), "SELECT 1 FROM runs LIMIT 1").fetchall()
        info = self._connection().info
        return f"postgresql {info.host}:{info.port}/{info.dbname}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
