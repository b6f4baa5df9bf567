"""The SQL base of the registry: what a dialect supplies, and every read (a run, lists by filter, counts, steps).

:class:`SqlReads` holds the contract a dialect fills (connections, transactions, its spellings) and the
queries that only read; :class:`~nectar.registry.sql.SqlRunStore` adds the writes of a run's life.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Self, TypeVar

from nectar.registry.counts import READ_COUNTS, READ_DURATIONS, STATE_COLUMNS
from nectar.registry.model import Attempt, Durations, Run, RunFilter, RunState, Step, made_at_once
from nectar.registry.schema import (
    ATTEMPT_COLUMNS,
    QUEUED,
    RUNS,
    STATUS_COLUMNS,
    STATUS_STEP_COLUMNS,
    RunStatus,
    StepStatus,
    latest_of_key,
    run_of,
    run_status_of,
    step_statuses,
    values,
)
from nectar.registry.store import RunStore

if TYPE_CHECKING:
    from nectar.config import Settings

T = TypeVar("T")

#: a step's columns as :meth:`SqlReads.steps` reads them, in the order of :class:`Step`'s fields
STEP_FIELDS = ("run_id", "task_id", "task", "key", "state", "executed", "error", "updated_at")
#: a step's fields in that order, each set by name when a step is built from a row (:func:`step_of`)
_STEP_NAMES = tuple(field.name for field in fields(Step))


def status_read_sql(row_id: str, written: str, collect: str | None = None) -> str:
    """A key's latest run and its steps in one read: one row per step, the requested task last (a run without steps: one
    row, its step columns NULL; no run: no row). Of the run, the columns a status answers
    (:data:`~nectar.registry.schema.STATUS_COLUMNS`), not all 28, and of each step those a status answers
    (:data:`~nectar.registry.schema.STATUS_STEP_COLUMNS`: not its run's id, which its run's row holds, its luigi task id
    or its time): each column costs each lookup a fetch (and SQLite's and Python's calls around it). The run is found by
    its ``row_id`` (the column that names its row most cheaply: SQLite's ``rowid``, which the indexes hold beside each
    key, so the subquery of an ended run reads ``runs_by_key`` alone; else its ``id``) as
    :func:`~nectar.registry.schema.latest_of_key` finds it (by ``written``, the key its two parameters), its steps by
    their run's id; each row ends with its step's ``seq``, by which the rows are put in order here (SQLite sorted them
    in a temporary B-tree, built for every status lookup: no index has a run's steps in that order). The run was read in
    a subquery in FROM before, which SQLite ran as a co-routine handing the outer query its 28 columns: ~109k -> ~101k
    instructions a read (callgrind, 10,000 runs).

    ``collect``: the name of a function of the connection that is handed each row's values, in that order, for a
    dialect whose fetch costs more per column than such a call (SQLite's: :meth:`SQLiteRunStore._status_rows
    <nectar.registry.sqlite.SQLiteRunStore._status_rows>`); the read's one row is then the count of the rows."""
    columns = (
        f"{', '.join(f'r.{column}' for column in STATUS_COLUMNS)}, "
        f"{', '.join(f's.{column}' if collect else f's.{column} AS step_{column}' for column in STATUS_STEP_COLUMNS)}, "
        f"s.seq{'' if collect else ' AS step_seq'}"
    )
    return (
        f"SELECT {f'count({collect}({columns}))' if collect else columns} "
        "FROM runs AS r LEFT JOIN steps AS s ON s.run_id = r.id "
        f"WHERE r.{latest_of_key(row_id, written)}"
    )


#: a run's place in the order the registry wrote the runs, in a dialect that keeps it in a column of its own
#: (:data:`~nectar.registry.schema.RUNS_WRITTEN`)
WRITTEN = "written"
#: :func:`status_read_sql` by the run's id and that column, as such a dialect reads it
STATUS_READ = status_read_sql("id", WRITTEN)


def _seq(row: Sequence[Any]) -> int:
    """The ``seq`` a row of :func:`status_read_sql` ends with."""
    return int(row[-1])


def step_of(row: Sequence[Any]) -> Step:
    """The step of a row of :data:`STEP_FIELDS`' values, its fields set at once (:func:`made_at_once`: a status
    lookup builds one per step, ~2.2 -> 1.4 us)."""
    run_id, task_id, task, key, state, executed, error, updated_at = row
    found = (run_id, task_id, task, key, state, bool(executed), error, updated_at)
    return made_at_once(Step, zip(_STEP_NAMES, found, strict=True))


def filter_sql(runs: RunFilter) -> tuple[str, list[Any]]:
    """The SQL condition that selects the runs of a filter, and its arguments."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("chain_type", runs.chain_type), ("chain", runs.chain), ("task", runs.task)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if runs.state is not None:
        clauses.append("state = ?")
        args.append(runs.state.value)
    if runs.since is not None:
        clauses.append("queued_at >= ?")
        args.append(runs.since)
    if runs.until is not None:
        clauses.append("queued_at < ?")
        args.append(runs.until)
    return " AND ".join(clauses) or "TRUE", args


def counted(runs: RunFilter) -> str | None:
    """The expression over ``run_counts``' row that counts the runs of a filter by state alone (its column), or of
    none (every state's, added); None for any other filter (the counts are by state only)."""
    if runs == RunFilter(state=runs.state):
        return " + ".join(STATE_COLUMNS.values()) if runs.state is None else STATE_COLUMNS[runs.state]
    return None


class SqlReads(RunStore):
    """The registry in SQL that SQLite and PostgreSQL both speak, with ``?`` for each parameter: its reads.

    A dialect answers reads on a connection of the calling thread and process (:meth:`_read`), gives
    a transaction that serialises writers to the rows it touches (:meth:`_db`), and spells:
    :attr:`LOCK` locks the rows a write transaction selects, :attr:`SKIP_LOCKED` also skips the rows
    another transaction holds (a claim), :attr:`GREATEST` names the two-value maximum;
    :attr:`COUNTED_AT_COMMIT` says whether its triggers count a change of the PENDING runs
    (``run_counts``, :mod:`~nectar.registry.counts`) when its transaction commits, rather than at once;
    :attr:`STATUS_READ` is a status lookup's read (:func:`status_read_sql`); :attr:`WRITTEN` names a run's place in
    the order the registry wrote the runs (a key's latest ended run is the one written last; a listing's runs of one
    queue time, the one written last first).
    """

    LOCK = ""
    SKIP_LOCKED = ""
    GREATEST = "MAX"
    COUNTED_AT_COMMIT = False
    #: the status lookup's read (:meth:`latest_status`), in this dialect's cheapest spelling
    STATUS_READ = STATUS_READ
    #: the condition that selects a key's latest run (:meth:`latest`), in this dialect's cheapest spelling
    LATEST_OF_KEY = latest_of_key("id", WRITTEN)
    #: a run's place in the order the registry wrote the runs, as this dialect names it
    WRITTEN = WRITTEN

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The registry where the settings place it."""

    @abstractmethod
    def _read(self, query: Callable[[Any], T]) -> T:
        """``query``'s answer, asked on a connection (autocommit, rows as mappings) outside any transaction.

        ``query`` may run twice (a dialect may ask again on a new connection): it only reads.
        """

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
        return None if row is None else values(row)[0]

    def _select(self, db: Any, condition: str, *args: Any, lock: bool = False) -> Run | None:
        text = f"SELECT {RUNS} FROM runs WHERE {condition}{self.LOCK if lock else ''}"
        return run_of(self._exec(db, text, args).fetchone())

    def get(self, run_id: str) -> Run | None:
        return self._read(lambda db: self._select(db, "id = ?", run_id))

    def owns(self, run_id: str, attempt: int) -> bool:
        """As :meth:`RunStore.owns`, reading the run's state and attempt, not the whole run (the fence asks before
        each commit of a step: its output, ``params.txt``, its logs)."""
        query = "SELECT state FROM runs WHERE id = ? AND attempt = ?"
        return bool(self._read(lambda db: self._scalar(db, query, (run_id, attempt))) == RunState.RUNNING)

    def latest(self, key: str) -> Run | None:
        return self._read(lambda db: self._select(db, self.LATEST_OF_KEY, key, key))

    def _status_rows(self, db: Any, key: str) -> list[tuple[Any, ...]]:
        """The rows :attr:`STATUS_READ` reads for ``key``, each a tuple of its values in column order (a dialect may
        get them another way than as its connection's mappings: :class:`~nectar.registry.sqlite.SQLiteRunStore`)."""
        return [values(row) for row in self._exec(db, self.STATUS_READ, (key, key)).fetchall()]

    def latest_status(self, key: str) -> tuple[RunStatus | None, list[StepStatus]]:
        rows = self._read(lambda db: self._status_rows(db, key))
        if not rows:
            return None, []
        width = len(STATUS_COLUMNS)
        run = run_status_of(rows[0][:width])
        if rows[0][width] is None:  # no step yet: the LEFT JOIN's one row, its step columns NULL
            return run, []
        if len(rows) > 1:
            rows.sort(key=_seq, reverse=True)  # the last recorded first
        return run, step_statuses(rows, width)

    def find(self, where: RunFilter, offset: int = 0, limit: int = 50) -> tuple[list[Run], int]:
        """As :meth:`RunStore.find`. The total of a filter by state alone, or of none, is the count the database
        keeps with each change (``run_counts``, :mod:`~nectar.registry.counts`: one row read), exact where it is;
        of any other, a ``COUNT(*)`` of the runs it selects (a state's was one of every run in it, through the
        index ``runs_queue``: 10,000 PENDING runs read for a page of 50)."""
        condition, args = filter_sql(where)
        kept = counted(where)

        def page(db: Any) -> tuple[list[Run], int]:
            if kept is not None:
                total = int(self._scalar(db, f"SELECT {kept} FROM run_counts WHERE id = 1"))
            else:
                total = int(self._scalar(db, f"SELECT COUNT(*) FROM runs WHERE {condition}", args))
            rows = self._exec(
                db,
                f"SELECT {RUNS} FROM runs WHERE {condition} "
                f"ORDER BY queued_at DESC, {self.WRITTEN} DESC LIMIT ? OFFSET ?",
                [*args, max(0, limit), max(0, offset)],
            ).fetchall()
            return [run for run in map(run_of, rows) if run is not None], total

        return self._read(page)

    def count_by_state(self) -> dict[RunState, int]:
        """How many runs are in each state, as the database counts them with each change (one row, not a scan)."""
        row = self._read(lambda db: self._exec(db, READ_COUNTS).fetchone())
        return dict(zip(STATE_COLUMNS, map(int, values(row)), strict=True))

    def durations(self) -> dict[str, Durations]:
        """By task, as the database counts them with each change (a row per task, not a scan of the runs)."""
        rows = self._read(lambda db: self._exec(db, READ_DURATIONS).fetchall())
        return {
            row[0]: Durations(tuple(int(n) for n in row[3:]), int(row[1]), float(row[2])) for row in map(values, rows)
        }

    def steps(self, run_id: str) -> list[Step]:
        text = f"SELECT {', '.join(STEP_FIELDS)} FROM steps WHERE run_id = ? ORDER BY seq DESC"
        rows = self._read(lambda db: self._exec(db, text, (run_id,)).fetchall())
        return [step_of(values(row)) for row in rows]

    def queued(self) -> int:
        """How many runs are PENDING, as the database counts them with each change (one row read, not a scan)."""
        return int(self._read(lambda db: self._scalar(db, QUEUED)))

    def attempts(self, run_id: str) -> list[Attempt]:
        text = f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts WHERE run_id = ? ORDER BY attempt"
        rows = self._read(lambda db: self._exec(db, text, (run_id,)).fetchall())
        return [Attempt(*values(row)) for row in rows]

    def count(self, state: RunState | None = None) -> int:
        if state is None:
            return int(self._read(lambda db: self._scalar(db, "SELECT COUNT(*) FROM runs")))
        return int(self._read(lambda db: self._scalar(db, "SELECT COUNT(*) FROM runs WHERE state = ?", (state.value,))))
