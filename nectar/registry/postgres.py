"""The run registry on PostgreSQL, shared by the API and the workers of every machine.

Same logic as SQLite's (:class:`~nectar.registry.sql.SqlRunStore`), with PostgreSQL's concurrency:
workers claim with ``SELECT ... FOR UPDATE SKIP LOCKED`` (two workers never wait on, nor take,
the same run), writes lock only the rows they change, and a queued or requeued run sends a
``NOTIFY`` that wakes idle workers at once (``LISTEN``, on a connection of its own outside the
pool), so they may poll the table rarely. Each process borrows its connections from a pool of
its own (``psycopg_pool``: one kept open, at most ``NECTAR_DATABASE_POOL``); a forked child opens
its own and never touches its parent's. The schema carries its version in ``nectar_schema`` and
upgrades itself under an advisory lock. While the database cannot be reached every call raises
:class:`~nectar.errors.RegistryUnavailable` at once (a 503 in the API; workers wait), and the
first call after it is back opens a new pool (the server took the old one's connections with it).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from nectar import wakeup
from nectar.errors import RegistryUnavailable
from nectar.forks import lock_made_anew_in_children
from nectar.registry import counts, fire_counts
from nectar.registry.schema import (
    COUNT_AGAIN,
    COUNT_FIRES,
    COUNT_PENDING,
    COUNT_RUNS,
    LATEST,
    ONE_ACTIVE,
    PENDING_CHANGES,
    RUNS_BY_KEY,
    RUNS_WRITTEN,
    STEPS_BY_RUN,
    UNCOUNT_PENDING,
    refuse_newer,
    runs_by_key,
    statements,
)
from nectar.registry.triggers_sql import SqlTriggers
from nectar.registry.waits_sql import SqlWaits

if TYPE_CHECKING:
    from nectar.config import Settings

T = TypeVar("T")
Connection = psycopg.Connection[Any]
CHANNEL = "nectar_runs"
#: an arbitrary key for pg_advisory_xact_lock: one migration at a time, whoever starts at once
MIGRATION_LOCK = 0x6E65637461
#: PostgreSQL came with schema version 3 of :data:`~nectar.registry.schema.MIGRATIONS`, which it records as 1
FIRST_VERSION = 3
#: the version this release records in ``nectar_schema``
SCHEMA_VERSION = LATEST - FIRST_VERSION + 1
#: each run's place in the order the registry wrote the runs (RUNS_WRITTEN): a column drawn from a sequence by the
#: insert itself, in its transaction (an identity, never given by a writer: a bulk load's runs take theirs in the
#: order given). A key's next run is inserted only once the one before has ended (one active run a key), after that
#: one's insert committed, so its number is the greater, whatever process, machine or clock wrote it; two processes'
#: run ids of one millisecond were in no order. The runs written before are numbered as version 16 ordered a key's
#: runs (queue time, then id), each active run after every ended one, then the sequence set past them; all of it
#: only where the column is not there yet (as each statement of a migration, made so that it may be run again)
WRITTEN_IN_ORDER = [
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'runs' AND column_name = 'written') THEN "
    "ALTER TABLE runs ADD COLUMN written BIGINT; "
    "UPDATE runs SET written = o.place FROM (SELECT id, row_number() OVER (ORDER BY "
    f"CASE WHEN {ONE_ACTIVE} THEN 1 ELSE 0 END, queued_at, id) AS place FROM runs) AS o WHERE runs.id = o.id; "
    "ALTER TABLE runs ALTER COLUMN written SET NOT NULL; "
    "ALTER TABLE runs ALTER COLUMN written ADD GENERATED ALWAYS AS IDENTITY; "
    "PERFORM setval(pg_get_serial_sequence('runs', 'written'), (SELECT COUNT(*) FROM runs) + 1, false); "
    "END IF; END $$"
]
#: this dialect's statements for the schema's placeholders. Versions 7 and 8 kept ``run_queue.pending`` counted
#: by triggers deferred to the commit, so a transaction took the count's row last and held it only while it
#: committed (no lock order to deadlock on); from 9 on, the counts of :mod:`~nectar.registry.counts`, likewise
OWN_STATEMENTS = {
    COUNT_PENDING: [
        "CREATE OR REPLACE FUNCTION nectar_count_pending() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE run_queue SET pending = pending + TG_ARGV[0]::integer WHERE id = 1; RETURN NULL; END $$",
        *(
            f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON runs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f"WHEN ({when}) EXECUTE FUNCTION nectar_count_pending('{delta}')"
            for name, event, delta, when in PENDING_CHANGES
        ),
    ],
    UNCOUNT_PENDING: [
        *(f"DROP TRIGGER IF EXISTS {name} ON runs" for name, *_ in PENDING_CHANGES),
        "DROP FUNCTION IF EXISTS nectar_count_pending()",
    ],
    COUNT_RUNS: counts.POSTGRES_TRIGGERS,
    COUNT_FIRES: fire_counts.POSTGRES_TRIGGERS,
    COUNT_AGAIN: [],  # its triggers, one function a table deferred to the commit, stay as they are
    STEPS_BY_RUN: [],  # a table is a heap beside its indexes here, whatever its primary key: nothing to make anew
    RUNS_WRITTEN: WRITTEN_IN_ORDER,
    # a key's ended runs by their place in the order written, each entry carrying its run's id: the read is answered
    # from the index alone (an index-only scan, backwards), the state not needed (the index's condition implies the
    # read's)
    RUNS_BY_KEY: [runs_by_key(", written", " INCLUDE (id)")],
}
#: connections a process keeps at most (``NECTAR_DATABASE_POOL``)
DEFAULT_POOL_SIZE = 4

#: the pools of a parent process, which a forked child keeps unused: never closed (that would end the parent's
#: sessions) nor collected (a pool's collection stops its threads, which are not in the child)
_INHERITED: list[ConnectionPool[Any]] = []
#: held while a process opens its pool; a fork's own (a parent's thread may have held it at the fork)
_opening = lock_made_anew_in_children(globals(), "_opening")
_POOLS = itertools.count(1)


class PostgresRunStore(SqlTriggers, SqlWaits):
    """The registry in a PostgreSQL database; safe across threads, processes and machines."""

    LOCK = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    SHARE = " FOR SHARE"
    GREATEST = "GREATEST"
    COUNTED_AT_COMMIT = True
    FIRE_IDLE_LIMIT = "SET LOCAL idle_in_transaction_session_timeout = '10s'"

    def __init__(self, url: str, connect_timeout: float = 10, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.pool_size = max(1, pool_size)
        self._pool: ConnectionPool[Any] | None = None
        self._pool_pid = 0
        #: a connection was found cut: ask the server directly until it answers, then open a new pool
        self._lost = False
        self._listener: Connection | None = None
        self._listener_pid = 0
        self._migrate()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        assert settings.database_url is not None
        return cls(settings.database_url, pool_size=settings.database_pool)

    def _connect(self) -> Connection:
        """A connection of its own, outside the pool (migrations, LISTEN, asking whether the server is back)."""
        try:
            return psycopg.connect(self.url, **self._options())
        except psycopg.OperationalError as exc:
            raise RegistryUnavailable(f"PostgreSQL cannot be reached: {_first_line(exc)}") from exc

    def _options(self) -> dict[str, Any]:
        return {"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, int(self.connect_timeout))}

    def _pool_here(self) -> ConnectionPool[Any]:
        """This process's pool, opened on its first use (in a forked child: its own, not its parent's)."""
        if self._pool is not None and self._pool_pid == os.getpid():
            return self._pool
        with _opening:
            if self._pool is None or self._pool_pid != os.getpid():
                if self._pool is not None:
                    _INHERITED.append(self._pool)
                self._pool, self._pool_pid = self._open_pool(), os.getpid()
            return self._pool

    def _open_pool(self) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self.url,
            kwargs=self._options(),
            min_size=1,
            max_size=self.pool_size,
            timeout=self.connect_timeout,
            num_workers=1,
            name=f"nectar-registry-{next(_POOLS)}",
            open=True,
        )
        weakref.finalize(self, _close, pool, os.getpid())  # not left to the pool's own collection, see _close
        return pool

    def close(self) -> None:
        """End this process's use of the database: its pool's connections and threads, and its LISTEN connection,
        closed (a parent's, kept by a forked child, never: they are the parent's sessions); a later use opens them
        again."""
        with _opening:
            pool, self._pool = (self._pool, None) if self._pool_pid == os.getpid() else (None, self._pool)
            listener = self._listener if self._listener_pid == os.getpid() else None
            if listener is not None:
                self._listener = None
        if pool is not None:
            _close(pool, os.getpid())
        if listener is not None and not listener.closed:
            listener.close()

    def _reach(self, cut: ConnectionPool[Any]) -> None:
        """After ``cut`` gave a connection the server had cut: if the server answers now (asked directly: the pool
        would wait out its timeout), put a new pool in place of ``cut``; else raise RegistryUnavailable."""
        self._lost = True
        self._connect().close()
        with _opening:
            if self._pool is cut:
                self._pool = self._open_pool()
                _close(cut, os.getpid())  # what it lent is closed when given back
        self._lost = False

    @contextmanager
    def _checkout(self) -> Iterator[tuple[ConnectionPool[Any], Connection]]:
        """A connection borrowed from this process's pool, and the pool, for the time of the block."""
        if self._lost:
            self._reach(self._pool_here())
        pool = self._pool_here()
        try:
            conn = pool.getconn()
        except PoolTimeout as exc:
            self._lost = True
            raise RegistryUnavailable(
                f"PostgreSQL gave no connection within {pool.timeout:g}s (this process holds at most {pool.max_size}, "
                "NECTAR_DATABASE_POOL)"
            ) from exc
        try:
            yield pool, conn
        finally:
            pool.putconn(conn)  # a broken one is dropped, and replaced

    def _read(self, query: Callable[[Connection], T]) -> T:
        for again in (False, True):
            with self._checkout() as (pool, db):
                try:
                    return query(db)
                except psycopg.OperationalError as exc:
                    if again or not db.broken:
                        raise RegistryUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}") from exc
            self._reach(pool)  # a read on a connection the server had cut: once more, on a new one
        raise AssertionError("unreachable")

    @contextmanager
    def _db(self) -> Iterator[Connection]:
        try:
            with ExitStack() as stack:
                pool, conn = stack.enter_context(self._checkout())
                try:
                    stack.enter_context(conn.transaction())
                except psycopg.OperationalError:
                    if not conn.broken:
                        raise
                    stack.close()  # BEGIN failed: nothing was done, so once more on a new connection
                    self._reach(pool)
                    pool, conn = stack.enter_context(self._checkout())
                    stack.enter_context(conn.transaction())
                yield conn
        except psycopg.OperationalError as exc:  # broke within the transaction: rolled back; the next call reconnects
            raise RegistryUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}") from exc

    def _up_for(self, db: Any) -> float:
        """How long since the server (re)started, in its own clock (its start is never compared with a node's clock,
        which may not agree with the server's): a crash and restart cost every running attempt its heartbeats."""
        return float(self._scalar(db, "SELECT EXTRACT(EPOCH FROM clock_timestamp() - pg_postmaster_start_time())"))

    def clock_skew(self) -> tuple[float, float]:
        def read(db: Connection) -> tuple[float, float]:
            before = time.time()
            server = float(self._scalar(db, "SELECT EXTRACT(EPOCH FROM clock_timestamp())"))
            after = time.time()
            return (before + after) / 2 - server, (after - before) / 2

        return self._read(read)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _migrate(self) -> None:
        """Bring the database to :data:`SCHEMA_VERSION`, one transaction, whoever else starts at once."""
        with self._connect() as conn:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    conn.execute("CREATE TABLE IF NOT EXISTS nectar_schema (version INTEGER NOT NULL)")
                    row = conn.execute("SELECT version FROM nectar_schema").fetchone()
                    version = int(row["version"]) if row else 0
                    refuse_newer(version, SCHEMA_VERSION, "in PostgreSQL")
                    for statement in statements(
                        version + FIRST_VERSION - 1 if version else 0, "DOUBLE PRECISION", OWN_STATEMENTS
                    ):
                        conn.execute(statement)
                    if row is None:
                        conn.execute("INSERT INTO nectar_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
                    elif version < SCHEMA_VERSION:
                        conn.execute("UPDATE nectar_schema SET version = %s", (SCHEMA_VERSION,))
            except psycopg.OperationalError as exc:
                raise RegistryUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}") from exc

    def _queued(self) -> None:
        try:
            with self._checkout() as (_, conn):
                conn.execute(f"NOTIFY {CHANNEL}")
        except (psycopg.OperationalError, RegistryUnavailable):
            pass  # the run is queued all the same: workers also look for work on their own

    def wait_for_work(self, timeout: float, also: Sequence[int] = ()) -> bool:
        """Sleep until a run is queued anywhere (a NOTIFY), one of ``also`` is readable, or ``timeout`` seconds pass;
        True when a NOTIFY came. A wait that listens anew (this process's first, or the first after the database
        went away) returns True at once: a run queued before its LISTEN sent a NOTIFY no one heard."""
        listener, new = self._listen()
        if listener is None:
            return super().wait_for_work(timeout, also)
        if new:
            return True
        try:
            if not also:
                return any(True for _ in listener.notifies(timeout=timeout, stop_after=1))
            # what the connection holds already; else one poll() of its socket and of ``also``, then what it received
            if sum(1 for _ in listener.notifies(timeout=0.0)):
                return True
            woken = wakeup.readable([listener.fileno(), *also], timeout)
            if listener.fileno() in woken:
                for _ in listener.notifies(timeout=0.0):
                    pass
            return listener.fileno() in woken
        except psycopg.OperationalError:
            self._listener = None  # the database went away: reconnect on the next wait
            return super().wait_for_work(timeout, also)

    def _listen(self) -> tuple[Connection | None, bool]:
        """This process's listening connection: its own, held for good, never one of the pool's; and whether it began
        to listen now."""
        if self._listener is not None and not self._listener.closed and self._listener_pid == os.getpid():
            return self._listener, False
        try:
            self._listener = self._connect()
            self._listener.execute(f"LISTEN {CHANNEL}")
            self._listener_pid = os.getpid()
        except (psycopg.OperationalError, RegistryUnavailable):
            self._listener = None
        return self._listener, True

    def check(self) -> str:
        def describe(db: Connection) -> str:
            db.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
            return f"postgresql {db.info.host}:{db.info.port}/{db.info.dbname}"

        return self._read(describe)


def _close(pool: ConnectionPool[Any], pid: int) -> None:
    """Close a pool of this process (never a parent's), from any thread: a pool collected instead would stop
    its threads from whichever thread collected it, one of its own perhaps, which cannot wait for itself."""
    if os.getpid() != pid:
        return
    if threading.current_thread().name.startswith(f"{pool.name}-"):  # one of its threads: let another wait for it
        threading.Thread(target=pool.close, kwargs={"timeout": 1.0}, daemon=True).start()
    else:
        pool.close(timeout=1.0)


def holds_registry(url: str, connect_timeout: float = 10) -> str | None:
    """None where the database at ``url`` holds a registry (its ``nectar_schema`` table, on its search path); else
    what to say of it, naming the database (not its password): a read made there would make the registry first."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout))) as conn:
            row = conn.execute("SELECT to_regclass('nectar_schema') IS NOT NULL, current_database()").fetchone()
    except psycopg.OperationalError as exc:
        raise RegistryUnavailable(f"PostgreSQL cannot be reached: {_first_line(exc)}") from exc
    held, database = row if row is not None else (False, "?")
    return None if held else f"no run registry in the PostgreSQL database {database!r} (no nectar_schema table there)"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
