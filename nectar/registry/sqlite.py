"""The run registry in one SQLite file in the data folder: safe across threads and forked processes of one machine."""

from __future__ import annotations

import atexit
import fcntl
import os
import sqlite3
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from nectar import wakeup
from nectar.descriptors import SharedDescriptor
from nectar.errors import RegistryUnavailable
from nectar.forks import SQLITE, lock_made_anew_in_children, pid
from nectar.registry import counts, fire_counts, sqlite_counts
from nectar.registry.combine import Combiner, Outcome
from nectar.registry.model import Run, Step
from nectar.registry.reads import status_read_sql
from nectar.registry.schema import (
    ACTIVE_OF_KEY,
    COUNT_AGAIN,
    COUNT_FIRES,
    COUNT_PENDING,
    COUNT_RUNS,
    LATEST,
    PENDING_CHANGES,
    QUEUED,
    RUN_COLUMNS,
    RUNS_BY_KEY,
    RUNS_WRITTEN,
    STEP_COLUMNS,
    STEPS_BY_RUN,
    UNCOUNT_PENDING,
    latest_of_key,
    param_marks,
    refuse_newer,
    runs_by_key,
    statements,
    steps_table,
)
from nectar.registry.sql import FRESH_COLUMNS, INSERT_FRESH, INSERT_NEW, Insert, new_run_insert
from nectar.registry.sqlite_checkpoints import BACKSTOP_FRAMES, Checkpointer, opening, release
from nectar.registry.sqlite_fresh import fresh_statements
from nectar.registry.triggers_sql import SqlTriggers
from nectar.registry.turn_waits import TurnWaiter
from nectar.registry.waits_sql import SqlWaits

if TYPE_CHECKING:
    from nectar.config import Settings

T = TypeVar("T")
#: the schema version this release writes, kept in ``PRAGMA user_version``
SCHEMA_VERSION = LATEST


class TurnNotTaken(RegistryUnavailable, sqlite3.OperationalError):
    """A writer that waited :data:`BUSY_TIMEOUT` for the registry's write turn and did not get it (another process, or
    thread, held it: one stopped, or stuck): SQLite's own error, as a caller that handles SQLite's catches it, and the
    registry unavailable for now, as the API answers it (503, Retry-After), not a fault of the request (500)."""


class RegistryFull(RegistryUnavailable, sqlite3.OperationalError):
    """SQLite could not write the registry: its disk is full (``SQLITE_FULL``, "database or disk is full"). SQLite's
    own error, as a caller that handles SQLite's catches it, and the registry unavailable until there is room (the
    API's 503 with Retry-After naming it, a worker's wait, as for PostgreSQL down), not a fault of the request."""

    retry_after = 5  # the API's default, not 2: a disk is not freed within a second or two


def _full(error: BaseException | None, path: Path) -> RegistryFull | None:
    """``error`` as :class:`RegistryFull` if it is SQLite's full disk (not already), else None."""
    if isinstance(error, RegistryUnavailable) or not isinstance(error, sqlite3.OperationalError):
        return None
    if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
        return None
    return RegistryFull(f"SQLite cannot write {path}: {error} (free space on its disk)")


#: seconds a writer waits for its turn, and SQLite for its locks, before "database is locked"
BUSY_TIMEOUT = 30.0


class Writers:
    """The turn to write one file, taken before SQLite's write lock: a writer that waits in SQLite's busy handler
    sleeps 1, 2, 5, 10... ms between looks, one that waits here takes its turn within a few tens of µs of the end of
    the writer before it.

    A process's threads queue on a lock, then the processes on a POSIX lock of ``<file>-writer``: under 16 clients
    (counted with strace, which slows each transaction), 0.17 to 0.40 sleeps of SQLite's busy handler per submission
    of two API workers, each at least 1 ms, where now none. The kernel's lock is tried, then waited for in the kernel's
    queue of the lock (:mod:`~nectar.registry.turn_waits`), for as long as SQLite's own busy timeout
    (:data:`BUSY_TIMEOUT`), then the writer is told what SQLite would tell it ("database is locked"). A POSIX lock is
    its process's: a fork does not inherit it, and the kernel releases it when the process dies, kill -9 included.
    """

    def __init__(self, path: Path, open_: Callable[[], sqlite3.Connection]) -> None:
        self._threads = threading.RLock()
        #: the process's checkpoints of the file, every so many turns (:mod:`~nectar.registry.sqlite_checkpoints`)
        self.checkpoints = Checkpointer(open_, lambda: self, f"{path}-shm")
        self._turn = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._path = path
        self._waiter = TurnWaiter(self._turn, str(path))
        self._depth = 0  # the same thread may enter again (the threads' lock is reentrant): the kernel's lock once
        #: the thread in the turn, and what it asked to be done once the turn is no longer its (:meth:`after_turn`)
        self._holder: int | None = None
        self._after: list[Callable[[], None]] = []
        self._pid = os.getpid()
        self._exiting = False  # a writer that waits for another process's turn gives up (:meth:`_exit`)
        atexit.register(self._exit)  # a process that ends leaves no turn of its own uncopied (not one os._exit ends)

    def close(self) -> None:
        """The process's checkpoints ended (what it wrote since the last copied), its turn's descriptor closed:
        once, in the process that made it (a fork's copy is its parent's). The descriptor is closed once no thread of
        the process is in a turn (closing it would drop the kernel's lock of one that is; an unlock after, on a number
        the process may have opened again, another file's): one that stays in its turn longer than
        :data:`BUSY_TIMEOUT`, or the closing thread's own, keeps it open. A turn taken after is refused."""
        if os.getpid() != self._pid or self._turn < 0:
            return
        atexit.unregister(self._exit)
        self.checkpoints.close()  # first: its thread may be waiting for a turn
        if not self._threads.acquire(timeout=BUSY_TIMEOUT):
            return
        try:
            if self._depth == 0 and self._turn >= 0:
                self._waiter.close()
                self._turn = -1
        finally:
            self._threads.release()

    def __enter__(self) -> None:
        if not self._threads.acquire(timeout=BUSY_TIMEOUT):
            raise TurnNotTaken("database is locked: another thread of this process held the write turn too long")
        if self._turn < 0:  # closed (a thread that found this turn before the registry was closed)
            self._threads.release()
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        try:
            if self._depth == 0:
                self._take_turn()
                self._holder = threading.get_ident()
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1

    def _take_turn(self) -> None:
        if not self._waiter.take(time.monotonic() + BUSY_TIMEOUT, self._gives_up):
            raise TurnNotTaken("database is locked: another process held the write turn too long")

    def _exit(self) -> None:
        """:meth:`close` as the process exits, the writers that wait for another process's turn (daemon threads, the
        only ones left then) giving up ("database is locked"), where the exit waited for them, up to
        :data:`BUSY_TIMEOUT`."""
        self._exiting = True
        self.close()

    def _gives_up(self) -> bool:
        return self._exiting or self.checkpoints.gives_up_turn()

    def __exit__(self, kind: object = None, error: BaseException | None = None, _: object = None) -> None:
        """The turn given back; a write in it that met a full disk raised as :class:`RegistryFull` (every write of
        the file is made in a turn)."""
        self._depth -= 1
        if self._depth == 0:
            fcntl.lockf(self._turn, fcntl.LOCK_UN)
            after, self._after, self._holder = self._after, [], None
            self._threads.release()
            self._then(after)
        else:
            self._threads.release()
        if error is not None:
            full = _full(error, self._path)
            if full is not None:
                raise full from error

    def _then(self, after: list[Callable[[], None]]) -> None:
        """What a turn asked to be done once it ended (:meth:`after_turn`), each one, then the checkpointer told: one
        that raises skips none of the rest. The first error is raised once all have run: the turn's write is
        committed, but what follows it (a byte that wakes the workers) was promised, and a caller that is not told
        of its failure cannot tell it went wrong; an expected failure is its own to catch (:meth:`_word`)."""
        first: BaseException | None = None
        for then in after:
            try:
                then()
            except BaseException as error:  # the rest run, then it is raised
                first = first or error
        self.checkpoints.wrote()
        if first is not None:
            raise first

    def after_turn(self, then: Callable[[], None]) -> bool:
        """If the calling thread is in its turn: ``then`` called once the turn is no longer its, the kernel's lock
        released (True). Else False: nothing done."""
        if self._depth == 0 or self._holder != threading.get_ident():
            return False
        self._after.append(then)
        return True


class Turn:
    """A thread's turn at writing, inside the fork gate (:data:`~nectar.forks.SQLITE`): entered, then taken."""

    __slots__ = ("_writer", "_taken")

    def __init__(self, writer: Callable[[], Writers]) -> None:
        self._writer = writer

    def __enter__(self) -> None:
        SQLITE.__enter__()
        try:
            taken = self._taken = self._writer()
            taken.__enter__()
        except BaseException:
            SQLITE.__exit__()
            raise

    def __exit__(self, kind: object = None, error: BaseException | None = None, tb: object = None) -> None:
        try:
            self._taken.__exit__(kind, error, tb)
        finally:
            SQLITE.__exit__()


#: ``struct flock`` as ``fcntl(F_GETLK)`` reads and writes it (Linux, 64-bit: type, whence, start, length, pid)
FLOCK = "hhqqi4x"


def turn_holder(fd: int) -> int | None:
    """The pid of another process holding a write lock of the file ``fd`` is open on (``F_GETLK``: a look that takes
    nothing; a lock of this process's own is not seen), or None."""
    asked = struct.pack(FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    kind, _, _, _, pid = struct.unpack(FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, asked))
    return None if kind == fcntl.F_UNLCK else int(pid)


#: each process's turn at writing each file (its own after a fork: a parent's thread may hold the old)
_WRITERS: dict[tuple[int, str], Writers] = {}
#: held while a process opens its turn at a file (once: a second would be a second lock file descriptor); a fork's
#: own (a parent's thread may hold it)
_OPENING = lock_made_anew_in_children(globals(), "_OPENING")
#: this dialect's statements for the schema's placeholders: the triggers that kept ``run_queue.pending`` counted
#: in the transaction of each change (versions 7 and 8), their removal, those that kept the counts from 9 to 11, and
#: from 12 on, the same counts in fewer, smaller triggers (:mod:`~nectar.registry.sqlite_counts`); from 14 on, the
#: steps ``WITHOUT ROWID``: a status lookup reads its run's steps from one b-tree, their rows in its leaves, where it
#: read the primary key's index, then the table's rows by rowid. In process (one connection, its 256 KiB cache, one
#: DONE step a run): ``pread`` calls a lookup 2.53 -> 1.81 at 1,000 runs, 4.27 -> 3.77 at 10,000. Served (the status
#: benchmark, --quick --repeats 3, four pairs of runs, each side first in turn, load 18-47): read calls a lookup
#: 3.03/2.95/2.99/2.96 -> 2.45/2.31/2.26/2.15 at 1,000 runs, 4.87/4.72/4.72/4.65 -> 4.22/4.21/4.35/4.25 at 10,000
#: (medians of the pairs' ratios 0.77x, 0.90x); the API's CPU a lookup over a hello's of the same run 0.98x at 1,000
#: and 0.92x at 10,000, medians of pairs that spread from 0.70x to 1.11x at that load (not a measured gain); the gap
#: between the sizes stays, ~1.8-2.0 reads a lookup
OWN_STATEMENTS = {
    COUNT_PENDING: [
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON runs FOR EACH ROW WHEN {when} "
        f"BEGIN UPDATE run_queue SET pending = pending + ({delta}) WHERE id = 1; END"
        for name, event, delta, when in PENDING_CHANGES
    ],
    UNCOUNT_PENDING: [f"DROP TRIGGER IF EXISTS {name}" for name, *_ in PENDING_CHANGES],
    COUNT_RUNS: counts.SQLITE_TRIGGERS,
    COUNT_FIRES: fire_counts.SQLITE_TRIGGERS,
    COUNT_AGAIN: sqlite_counts.SQLITE_TRIGGERS,
    STEPS_BY_RUN: [  # the rows in their primary key's b-tree (a run's steps together), not by rowid beside it
        steps_table("steps").format(real="REAL"),  # a file of before versions (taken for 1 or 2) may have none
        f"{steps_table('steps_by_run').format(real='REAL')} WITHOUT ROWID",
        f"INSERT INTO steps_by_run ({', '.join(STEP_COLUMNS)}) SELECT {', '.join(STEP_COLUMNS)} FROM steps",
        "DROP TABLE steps",
        "ALTER TABLE steps_by_run RENAME TO steps",
    ],
    # a run's place in the order the runs were written is its rowid: one more than the greatest in the table when
    # it is inserted (in the write lock), so a later run's is the greater; the order holds through VACUUM and a
    # dump's restore (each copies the rows in rowid order)
    RUNS_WRITTEN: [],
    # each entry's rowid after its key (SQLite's, in every index): a key's ended runs in the order they were written,
    # the last found at the end of its key's entries. Not the state beside them (version 15's), which would order
    # the entries by state before the rowid: the read takes the ended run's state from its row, which it reads next
    # anyway (the page in its cache: reads a status lookup at 10,000 and 100,000 runs as many as version 15's, where
    # (key, queued_at, id, state) took 3.70 -> 3.94 and 6.10 -> 6.26)
    RUNS_BY_KEY: [runs_by_key("", "")],
}
#: a new run, unless one of its key is active or the PENDING runs (the count the runs' triggers keep) are as many as
#: the last parameter: one statement, its own transaction. Its one row of ``VALUES``, not an ``INSERT ... SELECT ...
#: WHERE`` (an upsert's ``SELECT`` needs one): SQLite copies the rows of a ``SELECT`` into a temporary table before it
#: inserts them into a table with triggers (``runs`` has the counts'), made, filled and read again for each run. Past
#: the bound, its last column (``on_wait_timeout``, NOT NULL) is NULL, which ``OR IGNORE`` skips as it skips the row
#: of a key already active (the partial unique index): nothing is written either way, as ``DO NOTHING`` wrote nothing
#: (a run whose id is taken is skipped too, where it raised: the way of every dialect that follows raises it)


def insert_bounded(columns: Sequence[str]) -> str:
    """That insert of a run's ``columns``, the last of which is ``on_wait_timeout``."""
    assert columns[-1] == "on_wait_timeout"
    return (
        f"INSERT OR IGNORE INTO runs ({', '.join(columns)}) VALUES ({param_marks(columns[:-1])}, "
        f"CASE WHEN ({QUEUED}) < ?{len(columns) + 1} THEN ?{len(columns)} END)"
    )


INSERT_BOUNDED = insert_bounded(RUN_COLUMNS)
#: the same of a run that :func:`~nectar.registry.sql.fresh_row` writes (without the columns it has no value in)
INSERT_FRESH_BOUNDED = insert_bounded(FRESH_COLUMNS)
#: the bounded insert of each insert :func:`~nectar.registry.sql.new_run_insert` makes, of the same row
BOUNDED = {INSERT_NEW: INSERT_BOUNDED, INSERT_FRESH: INSERT_FRESH_BOUNDED}
#: a submission as this process's combiner takes it: the run, its bound, and its insert and row, made before the turn
Submission = tuple[Run, int | None, Insert]
#: None bound as NULL by the sqlite3 module's adapter for it, one look-up of its table: without one, each None (a new
#: run has 13, each a column it has not yet: its start, its end, its error...) is adapted the way the module finds
#: for a type it has none for, by asking the protocol for ``__adapt__`` and the value for ``__conform__``, the first
#: a missing attribute of a type, whose AttributeError is formatted then dropped: ~2k instructions a None. The
#: adapter is process-wide (the module's one table) and gives back the same None it is given: no statement of any
#: connection binds another value than it did (``{}.get``: a call of C code, not of a Python function)
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))
#: KiB of pages each connection caches (SQLite's default is 2,000): a process has as many connections that read as
#: its threads read at once (an API worker up to 8) and one that writes, and a /metrics scrape reads every run, so
#: each filled its own 2 MB; the OS caches the file for all (the pages one write reads fit: 256 and 2,000 KiB read
#: as many per new run). Neither a larger cache nor a mapped file (``mmap_size``, left at 0) pays here: a lookup's
#: ~4.4 ``pread`` calls of pages (of 10,000 runs, at random: more pages than any connection's cache holds, and 8 of them
#: a worker) are each a copy from the OS's cache. With 2,000 KiB, 4.9 -> 3.4 reads a lookup, but the API's CPU per
#: lookup, per new run and per new run behind 20,000 queued 1.044x, 1.037x, 1.044x, and a worker's RSS 50 -> 61-65 MB.
#: Mapped (1 GiB), 4.6-4.9 -> 0.4-0.6 reads a lookup, the same CPU 0.908x (one pair of four 1.14x; 0.993x after the
#: writes), 0.979x, 1.032x, and a worker's RSS 50 -> 139-198 MB: every page of the file a connection touches is
#: resident in its process, once per connection that maps it, which the memory figures count (not
#: NECTAR_PROCESS_MAX_RSS_MB's bound of a task process: anonymous pages only); and an I/O error reading a mapped page
#: is a SIGBUS that kills the process, where a ``pread`` returns an error SQLite reports (4 pairs of API processes
#: each, both orders, /proc's CPU, machine load 8-22)
CACHE_KIB = 256
#: bytes a WAL file is cut back to as it starts over (``journal_size_limit``; SQLite's default keeps the file as large
#: as it ever grew, until the last connection closes): a reader's snapshot held for minutes had the WAL of every run
#: written meanwhile (20,000 runs from 4 processes, a snapshot held over 10,000 of them: 301-339 MB), kept on disk
#: as long as the service ran. Above the WAL's size without such a reader (19-62 MB there), so that no start over cuts
#: a WAL that grows back to the same size
WAL_BYTES_KEPT = 64 * 2**20
#: the function of each connection that the status read hands its rows to (:meth:`SQLiteRunStore._status_rows`)
COLLECT = "nectar_collect"
#: where :data:`COLLECT` puts the rows, each thread's own: SQLite calls it in the thread whose statement steps
_COLLECTED = threading.local()


def _collect(*row: Any) -> None:
    """:data:`COLLECT`: keep ``row``, a tuple of its values in column order, for the thread reading it."""
    _COLLECTED.rows.append(row)


@dataclass
class Own:
    """What one process of a store has of its own, made anew by the first use after a fork (a fork's copy is its
    parent's: its connections, mid-use in threads the fork does not have, and its descriptor)."""

    #: the process it belongs to
    pid: int
    #: the connection that writes (:meth:`SQLiteRunStore._writing`)
    writes: sqlite3.Connection | None = None
    #: the connections that read, idle (:meth:`SQLiteRunStore._read`)
    idle: list[sqlite3.Connection] = field(default_factory=list)
    #: each thread's connection borrowed while it reads (``held``: a read inside a read uses the same)
    threads: threading.local = field(default_factory=threading.local)
    #: its threads' submissions written together (:mod:`nectar.registry.combine`)
    combined: Combiner[Submission, tuple[Run, bool]] | None = None
    #: its descriptor for the word that a run was queued, once made (:meth:`SQLiteRunStore._changes`)
    changes: tuple[SharedDescriptor | None] | None = None
    #: its descriptor that gives that word (:meth:`SQLiteRunStore._queued`), once opened
    queues: SharedDescriptor | None = None


class SQLiteRunStore(SqlTriggers, SqlWaits):
    """The registry in one SQLite file (WAL, a process's connections lent to one thread at a time, a schema that
    upgrades itself)."""

    #: the status lookup's read finds a key's latest run by its rowid, which the indexes of runs by key hold, and
    #: which is the run's place in the order the runs were written (:data:`OWN_STATEMENTS`)
    STATUS_READ = status_read_sql("rowid", "rowid", COLLECT)
    LATEST_OF_KEY = latest_of_key("rowid", "rowid")
    WRITTEN = "rowid"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._own_of = Own(os.getpid())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # its schema checked (brought up to date): a gunicorn master does it once for its workers, and closes the
        # connection, with the one a migration wrote through: nothing of SQLite's crosses a fork (a worker opens its
        # own, checked again). Inside the fork gate, as every use of SQLite: a fork another thread made meanwhile
        # copied SQLite mid-open (nectar.forks)
        try:
            with SQLITE.inside():
                self._checked(self._open()).close()
                own = self._own()
                if own.writes is not None:
                    own.writes.close()
                    own.writes = None
        except BaseException:  # refused (a newer release's schema) or failed: nothing of this process's left on the
            self.close()  # file (its turn at writing, in _WRITERS, would have been held until the process's end)
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.registry_path)

    def _own(self) -> Own:
        """This process's own (:class:`Own`), made anew in a fork."""
        own = self._own_of
        if own.pid != pid():
            own = self._own_of = Own(pid())
        return own

    def _connection(self) -> sqlite3.Connection:
        """This thread's own connection (never shared across fork), for the looks that compare what ``PRAGMA
        data_version`` answers from one call to the next (the version is a connection's own): :meth:`owns` and
        :meth:`wait_for_work`. Other reads borrow one of the process's (:meth:`_read`)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != pid():  # never share a connection across fork
            conn = self._checked(self._open())  # kept once checked (its migration writes through the writer's)
            self._local.conn, self._local.pid, self._local.owned = conn, pid(), None
        return conn

    def _checked(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """``conn``, once it has read the schema's version (every new connection does: a read): a newer release's
        migration since this process opened the file is refused (never read or written with this release's
        statements), an older file brought up to date. A connection refused is closed; its caller keeps none."""
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._migrate()
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        with opening():  # its first lock on the WAL index not dropped by a release's close (sqlite_checkpoints)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the WAL file (the OS's page cache) before COMMIT returns, so an accepted run
        # survives kill -9 of any process (tests/faults/test_processes.py, test_worker_dies.py); the WAL is fsynced
        # at each wake of the checkpointer (every CHECKPOINT_TURNS write turns of a process, a copy or the fsync
        # alone: sqlite_checkpoints), so a power loss or kernel crash may roll back the runs accepted since, never
        # corrupts. FULL (an fsync per commit) cost +75 µs CPU and +165 µs under the write lock per submit.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.create_function(COLLECT, -1, _collect)  # before any statement is prepared (a new function expires them)
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        # a checkpoint in a writer's COMMIT only past BACKSTOP_FRAMES (10x SQLite's mark): the process's thread
        # checkpoints, off the writers' turn (sqlite_checkpoints); this is for a WAL no process checkpointed
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_FRAMES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_BYTES_KEPT}")
        return conn

    def _writing(self) -> sqlite3.Connection:
        """This process's one connection that writes, which its threads use in turn (the caller holds the turn).

        A connection drops every page it cached when it begins a transaction after another connection committed.
        With a connection per thread, a write found the pages it needs dropped, since another thread's connection
        had written, and read them again: 22 page reads (``pread``) per new run in an API worker of 8 threads
        under 16 clients (strace), 5.6 with one thread. Shared by the threads, the pages stay cached from one
        write of the process to the next, unless another process wrote in between: read calls per new run of 2 API
        workers, sockets' included, 16-22 -> 5-12 (``/proc/<pid>/io``). Its reads are the write's only: the
        threads' connections read (:meth:`_connection`)."""
        own = self._own()  # never share a connection across fork
        if own.writes is None:
            own.writes = self._open()  # kept first: its migration, if any, writes through it (our turn)
            try:
                self._checked(own.writes)
            except BaseException:
                own.writes = None
                raise
        return own.writes

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """``query``'s answer over a connection that reads, borrowed from this process's idle ones (one opened when
        none is idle) and given back after, the last given back first; a read inside ``query`` uses the same.

        A connection per thread was opened by each thread on its first read, each parsing the schema on its first
        statement (~1 ms of CPU, its triggers most of it): 8 per API worker, a recycled one's successor too. The
        threads borrow only while they read, so a process opens as many as read at once (its queries, each in its
        own autocommit read, never depended on their thread's connection).

        A connection whose query raised is closed, not lent again: a statement the query left unfinished (its cursor
        kept alive by the exception's traceback, as long as whoever caught it keeps it) holds the connection's read
        transaction open, and every later read over it answered the registry as it was then, missing every commit
        since (a run DONE read PENDING), until the cursor was freed."""
        return SQLITE.call(self._borrowing, query)  # no fork copies SQLite's state mid-use (nectar.forks)

    def _borrowing(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`_read`'s work, inside the fork gate."""
        own = self._own()
        held: sqlite3.Connection | None = getattr(own.threads, "held", None)
        if held is not None:
            return query(held)
        conn = own.idle.pop() if own.idle else self._checked(self._open())
        own.threads.held = conn
        try:
            answer = query(conn)
        except BaseException as exc:
            own.threads.held = None
            # the query's own frames, ended, let go of their cursors (their locals, kept by the traceback): each
            # statement left under way is reset as its cursor is freed, so the close ends the read transaction now,
            # not once whoever caught the exception lets it go (SQLite keeps a connection with a statement alive open)
            traceback.clear_frames(exc.__traceback__)
            conn.close()
            raise
        own.threads.held = None
        own.idle.append(conn)
        return answer

    def _status_rows(self, db: sqlite3.Connection, key: str) -> list[tuple[Any, ...]]:
        """As :meth:`SqlReads._status_rows`, each row handed by SQLite to :data:`COLLECT` as its values, all in the
        statement's one step, not fetched: Python 3.11's sqlite3 fetches a row a column at a time, letting go of the
        GIL around each column's type (26 times a lookup, the run's 19 columns, a step's 6 and the count), and made
        each value in the module's C code; a function's arguments are made in one call, the GIL taken once a row. The
        read's own row, the count, is not fetched: the cursor's close resets the statement. A lookup's read ~107k ->
        ~75k instructions (callgrind, 10,000 runs, in process). A :class:`sqlite3.Row` made per row, then a tuple of
        it, cost ~5k instructions more before that (a row fetched as a tuple)."""
        rows: list[tuple[Any, ...]] = []
        _COLLECTED.rows = rows
        try:
            db.execute(self.STATUS_READ, (key, key)).close()
        finally:
            _COLLECTED.rows = None  # no row another statement runs the function for is kept
        return rows

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one IMMEDIATE transaction (so readers never block on writers), which no fork
        of this process interrupts (a child would inherit its write lock, never released there)."""
        with SQLITE.inside(), self._writer():
            yield from self._transaction()

    @contextmanager
    def _submit_db(self) -> Iterator[sqlite3.Connection]:
        """:meth:`_db`'s transaction in the caller's turn, the fork gate entered and the writers' turn taken, as
        :meth:`submit_all` and the combiner's turns hold them: neither entered again (the gate's count and the turn's
        reentrant lock each taken and given back once more, where the turn's statements are a few)."""
        yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The writing connection inside one IMMEDIATE transaction (committed once the caller is done, rolled back
        if it raised), in the caller's turn."""
        conn = self._writing()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _writer(self) -> Writers:
        """This process's turn at writing to this file (its own after a fork: a parent's thread may hold the old)."""
        mine = (pid(), str(self.path))
        found = _WRITERS.get(mine)
        if found is None:
            with _OPENING:
                found = _WRITERS.get(mine) or _WRITERS.setdefault(mine, Writers(self.path, self._open))
        return found

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, one transaction, whoever else opens it at once: an empty file
        made at once in the schema the migrations reach (:mod:`~nectar.registry.sqlite_fresh`: ~30 -> ~8 ms of CPU),
        a file at an older version by the migrations it has not had."""
        with self._db() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            fresh = None
            if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
                columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                version = 2 if "attempt" in columns else 1  # written before versions were recorded
            elif version == 0 and not db.execute("SELECT 1 FROM sqlite_master").fetchone():
                fresh = fresh_statements(SCHEMA_VERSION)  # None: replayed (sqlite_fresh.json of another version)
            refuse_newer(version, SCHEMA_VERSION, str(self.path))
            for statement in fresh or statements(version, "REAL", OWN_STATEMENTS):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def submit(self, run: Run, max_pending: int | None = None) -> tuple[Run, bool]:
        """As every registry submits, but the submissions this process's threads make while another has the turn
        are written together, in the next turn (:mod:`nectar.registry.combine`), each one's insert and row made
        before its thread asks for the turn (:func:`~nectar.registry.sql.new_run_insert`: the parameters' JSON, the
        row's values), not in the turn, where the process's other writers and the other processes wait."""
        return self._combiner()((run, max_pending, new_run_insert(run)))

    def submit_all(
        self, asked: Sequence[tuple[Run, int | None]], made: Sequence[Insert] | None = None
    ) -> list[Outcome[tuple[Run, bool]]]:
        """As every registry writes them, in this process's turn at the file (the combiner's turns: the same, taken
        once), each run's insert and row made before the turn is taken."""
        made = made or [new_run_insert(run) for run, _ in asked]
        with self._writing_turn():
            return super().submit_all(asked, made)

    def _submit_made(self, asked: Sequence[Submission]) -> list[Outcome[tuple[Run, bool]]]:
        """The combiner's turn: :meth:`submit`'s runs, their inserts made, written as every registry writes them."""
        if len(asked) == 1:  # (most turns: no list made of one)
            ((run, bound, made),) = asked
            return super().submit_all(((run, bound),), (made,))
        return super().submit_all([(run, bound) for run, bound, _ in asked], [made for _, _, made in asked])

    def _submit_alone(self, run: Run, max_pending: int | None, made: Insert | None = None) -> Run:
        """A run alone in its turn (the caller's: the fork gate entered, the writers' turn taken) in one statement, in
        autocommit (its own transaction, which takes SQLite's write lock as it begins, as ``BEGIN IMMEDIATE`` does):
        its insert, bounded by the count of PENDING runs it reads, where it was ``BEGIN IMMEDIATE``, the insert, a
        read of the count and ``COMMIT``. The sqlite3 module lets go of the GIL around each statement's steps: under
        16 clients, each time another of the API worker's threads took it, and the writer, holding the turn, waited to
        have it back. An insert that does nothing finds the key's active run (the answer, full queue or not) or else
        is written as every dialect writes it, in a transaction: a full queue refused there (nothing written), or an
        active run that ended meanwhile replaced."""
        db = self._writing()
        insert, row = made = made or new_run_insert(run)
        if max_pending is None:
            inserted = self._exec(db, insert, row)
        else:
            inserted = self._exec(db, BOUNDED[insert], (*row, max_pending))
        if inserted.rowcount == 1:
            return run
        active = self._select(db, ACTIVE_OF_KEY, run.key)
        if active is not None:
            return active
        return super()._submit_alone(run, max_pending, made)

    def _combiner(self) -> Combiner[Submission, tuple[Run, bool]]:
        own = self._own()  # a fork's copy may be mid-turn in a thread it does not have
        if own.combined is None:
            # its turns are taken once: the registry's own writes, not submit_all's, which takes them again
            own.combined = Combiner(self._writing_turn, self._submit_made)
        return own.combined

    def _writing_turn(self) -> Turn:
        """The fork gate entered, then this process's turn at the file taken (a class's, not a generator's: a
        submission's turn)."""
        return Turn(self._writer)

    def claim(self, worker: str, run_id: str | None = None) -> Run | None:
        """As every registry claims, but in one statement in autocommit, in this process's turn at the file (its own
        transaction, which takes SQLite's write lock as it begins, as ``BEGIN IMMEDIATE`` does), with no look first
        at whether a run is due: where it was that look (over a connection that reads, which read again the pages
        the submission changed), ``BEGIN IMMEDIATE``, the update and ``COMMIT``, the writing connection then reading
        those pages again. A claim that finds no run due writes nothing (no frame to the WAL, no change another
        connection sees), and waits on no other writer but one in its turn, as that look did not: SQLite's write
        lock is taken only in a turn. A claim of a run another process just queued: 96-100 -> 68-77 µs of CPU, and
        with the worker's next look (which finds none), 122-128 -> 86-97 µs."""
        with self._writing_turn():
            return self._claim(self._writing(), worker, run_id)

    def record_steps(self, steps: Sequence[Step], attempt: int | None = None) -> bool:
        """As every registry writes them; an attempt's own (``attempt`` given) in this process's turn at the file, a
        step alone in one statement in autocommit (its own transaction, as :meth:`claim`'s), and once written, the
        fence's next look (:meth:`owns`) answered without a read while no other connection commits.

        The write found the attempt owning its run; every writer of the file commits in its turn (:class:`Writers`),
        so none has committed since when, still in that turn, this thread's reading connection reads its
        ``data_version``: the look that finds the same version later finds the same answer. Where the look after
        the attempt's own write read the run again (its version moved with that write): a step's start, then the
        fence's check of its ``params.txt``."""
        if attempt is None or not steps:
            return super().record_steps(steps, attempt)
        with self._writing_turn():
            if len(steps) == 1:
                written = self._write_steps(self._writing(), steps, attempt)
            else:
                with contextmanager(self._transaction)() as db:
                    written = self._write_steps(db, steps, attempt)
            if written:
                run_id = steps[0].run_id
                self._read(lambda db: self._remember_owned(db, run_id, attempt))
        return written

    def _remember_owned(self, db: sqlite3.Connection, run_id: str, attempt: int) -> None:
        """:meth:`owns` finds ``attempt`` owning the run while ``db``'s ``data_version`` stays what it is now."""
        self._local.owned = (run_id, attempt, db, db.execute("PRAGMA data_version").fetchone()[0])

    def owns(self, run_id: str, attempt: int) -> bool:
        """As every registry answers it, but without a read while no other connection has committed anything since
        the connection it borrows last found the attempt owned (``PRAGMA data_version``, a look at shared memory: a
        connection's own, so the answer kept names it; a thread that reads alone borrows the same each time): a
        cancel, a reclaim or a retry is a commit of another connection, so an unchanged version is an unchanged
        answer. The look is one statement in autocommit, and the read it may need another, after it: the version kept
        is the look's, from before the read, so a commit between the two moves the version past the one kept, and the
        next look reads again (a ``BEGIN`` and a ``COMMIT`` around the look made each look of a trivial run's fence
        three statements where one does: nine a run where three do)."""
        read = super().owns  # its read, after ``look``'s, over the same connection (held by this thread)

        def look(db: sqlite3.Connection) -> bool:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if getattr(self._local, "owned", None) == (run_id, attempt, db, version):
                return True
            owned = read(run_id, attempt)
            self._local.owned = (run_id, attempt, db, version) if owned else None
            return owned

        return self._read(look)

    def check(self) -> str:
        """This process's connections opened, each having read the schema (~1 ms each): one that reads (idle after,
        lent to the next read) and the one that writes. A spare attempt checks as it sets up, so its run's first write
        does not open a connection on the way from the claim to ``run()``."""
        self._read(lambda db: db.execute("SELECT 1 FROM runs LIMIT 1").fetchall())
        with SQLITE.inside(), self._writer():  # the turn: the threads make the writing connection one at a time
            self._writing().execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        return f"sqlite {self.path}"

    def close(self) -> None:
        """End this process's use of the file: its checkpoints (what it wrote since the last copied, the thread
        ended, its connection closed), its turn's descriptor, and the connections it holds idle (those another
        thread holds are its own), its descriptors of the word that a run was queued (:meth:`_queued`,
        :meth:`_changes`: each once no thread writes to or polls it). A later use opens them again. The
        checkpointer's descriptor of the WAL index is closed last, once no connection of the process is on the file
        (:func:`~.sqlite_checkpoints.release`: a close releases every lock of the process on the file, SQLite's
        too); kept until then."""
        with _OPENING:
            writers = _WRITERS.pop((os.getpid(), str(self.path)), None)
        if writers is not None:
            writers.close()
        own = self._own()
        mine = getattr(self._local, "conn", None) if getattr(self._local, "pid", None) == pid() else None
        # inside the fork gate, as every use of SQLite: a fork another thread made meanwhile copied SQLite mid-close
        # (nectar.forks). The checkpoints' end above is not: it joins their thread, which enters the gate, and a fork
        # waiting for this thread to leave kept that one out. Nor are the turn's descriptor (above), the words' and
        # release()'s (below): a fork meanwhile copies them half closed, and its child never uses them: each is its
        # parent's by pid (Writers keyed by pid, Own, SharedDescriptor's and Writers' close, _Echo's), what it needs it
        # opens anew, the locks a closing thread holds are made anew in it, and the kept WAL index descriptors it
        # inherits are closed as its fork returns (a number a release took out of the list stays open in it, unused)
        with SQLITE.inside():
            for conn in (own.writes, *own.idle, mine):  # and the closing thread's own (:meth:`_connection`)
                if conn is not None:
                    conn.close()
        own.writes, own.idle[:] = None, []
        self._local.conn = self._local.owned = None
        (queues, own.queues), (changes, own.changes) = (own.queues, None), (own.changes, None)
        for word in (queues, *(changes or ())):
            if word is not None:
                word.close()
        release()

    @property
    def checkpoints(self) -> Checkpointer:
        """This process's checkpoints of the file (:mod:`~nectar.registry.sqlite_checkpoints`)."""
        return self._writer().checkpoints

    #: seconds between two looks at whether another connection committed (a read of shared memory, no I/O), where
    #: the kernel cannot tell when a run is queued
    WAKE_INTERVAL = 0.002

    @property
    def queued_word(self) -> Path:
        """The file a byte is written to after each commit that queued a run (:meth:`_queued`), which the kernel tells
        the waiting workers of (:meth:`wait_for_work`)."""
        return self.path.with_name(f"{self.path.name}-queued")

    def _queued(self) -> None:
        """A run became claimable, and its commit is visible: one byte written over the same byte of
        :attr:`queued_word` wakes every worker waiting for work (``pwrite``: the file stays one byte long), once the
        turn of the thread that committed it, if it is in one, has ended. Written in the turn, it woke a worker that
        then found the turn still taken, and slept 50 µs or more before it looked again: 4 to 9 claims in 40 of the
        dispatch benchmark's."""
        if not self._writer().after_turn(self._word):
            self._word()

    def _word(self) -> None:
        """:meth:`_queued`'s byte, written now."""
        own = self._own()
        try:
            queues = own.queues
            if queues is None:
                with _OPENING:  # one per process (another thread's, made meanwhile, or this one)
                    if (queues := own.queues) is None:
                        fd = os.open(self.queued_word, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
                        queues = own.queues = SharedDescriptor(fd, self)
            if queues.take():  # not once closed (:meth:`close`): its number may be another file's since
                try:
                    os.pwrite(queues.fd, b"q", 0)
                finally:
                    queues.give_back()
        except OSError:  # the run is queued all the same: workers also look for work on their own
            pass

    def wait_for_work(self, timeout: float, also: Sequence[int] = ()) -> bool:
        """Return after ``timeout`` seconds, as soon as one of ``also`` is readable, or as soon as a run was queued
        (:meth:`_queued`) since this process's last wait began: a run queued while its caller looked for work wakes
        it at once, not at its next wait's end.

        It sleeps in one ``poll()`` of ``also`` and of the kernel's word that :attr:`queued_word` was written
        (:func:`nectar.wakeup.changes`), which each commit that queued a run writes once it is visible: no wake on
        the WAL's write before that commit is published, none on commits that queue nothing (a claim, a heartbeat,
        an attempt's end), and nothing read while it waits. The first wait of a process returns at once (a run may
        have been queued before the kernel watched for it). Without the kernel's word, it reads ``PRAGMA
        data_version`` every :data:`WAKE_INTERVAL` and after its last sleep, and returns once another connection has
        committed anything since the version it last compared (a thread's first wait returns at once): a commit it
        did not see, in the last sleep of a wait that ``also`` ended, is the next wait's news, never taken as seen.
        True when a run may have been queued (the word came, or a commit showed, or it is the first wait)."""
        changed, first = self._changes()
        if first:
            return True
        if changed is not None:  # closed before or during the wait (:meth:`close`): the next makes another
            return changed.poll(also, timeout) is not False

        def version() -> int:
            with SQLITE.inside():
                return int(self._connection().execute("PRAGMA data_version").fetchone()[0])

        seen = getattr(self._local, "seen", None)
        if seen is None or seen[0] != os.getpid():  # this thread's first wait: a commit before it went unseen
            self._local.seen = (os.getpid(), version())
            return True
        deadline = time.monotonic() + timeout
        while True:  # a look after each sleep, the last one's too; the version kept is the last one compared
            if (now := version()) != seen[1]:
                self._local.seen = (os.getpid(), now)
                return True
            left = deadline - time.monotonic()
            if left <= 0 or wakeup.readable(also, min(left, self.WAKE_INTERVAL)):
                return False

    def _changes(self) -> tuple[SharedDescriptor | None, bool]:
        """This process's descriptor for the word that a run was queued (made once, closed by :meth:`close` once no
        thread polls it, or as this store is freed; None where there is none), and whether it was made now. Threads
        waiting at once share it: the one that drains a wake-up wakes the others, and one between two waits then
        sees it at its next (:meth:`~nectar.descriptors.SharedDescriptor.poll`)."""
        own = self._own()  # a fork's copy is the parent's: make this process's own
        if own.changes is not None:
            return own.changes[0], False
        fd = None
        try:
            os.close(os.open(self.queued_word, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))  # watched, it must be
            fd = wakeup.changes(self.queued_word)
        except OSError:
            pass
        changes = None if fd is None else SharedDescriptor(fd, self)
        own.changes = (changes,)
        return changes, True
