"""The registry's tables, written once for every SQL dialect, and how a run becomes a row and back.

The schema grows by :data:`MIGRATIONS`: version n is reached by applying ``MIGRATIONS[n-1]``. A statement names its
floating-point columns ``{real}``, which a dialect spells its own way (:func:`statements`), and a placeholder
(:data:`COUNT_PENDING`, :data:`UNCOUNT_PENDING`, :data:`COUNT_RUNS`, :data:`COUNT_FIRES`, :data:`COUNT_AGAIN`,
:data:`STEPS_BY_RUN`, :data:`RUNS_WRITTEN`, :data:`RUNS_BY_KEY`) stands for the dialect's own statements: the triggers
that kept ``run_queue.pending`` (versions 7 and 8), their removal, the triggers that keep
:mod:`~nectar.registry.counts`' tables (from version 9) and :mod:`~nectar.registry.fire_counts`' (from 10), their
replacement (12, where a dialect has one: SQLite's :mod:`~nectar.registry.sqlite_counts`), the steps' table made anew in
its primary key's order (14, where a dialect can: SQLite's ``WITHOUT ROWID``), each run's place in the order the
registry wrote the runs (17, where a dialect has none of its own: :data:`RUNS_WRITTEN`) and the index of a key's ended
runs in that order (17, :func:`runs_by_key`); each dialect records the version reached where its database keeps such
things (SQLite's ``PRAGMA user_version``, a table in PostgreSQL).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

from nectar.errors import RegistryTooNew
from nectar.keys import strings_object
from nectar.registry import counts, fire_counts
from nectar.registry.model import Run, RunState, made_at_once

#: a run is active (one a key): the condition of the unique index ``runs_one_active_per_key``, which an upsert's
#: conflict target repeats, and a query repeats to be answered from it (SQLite's planner matches it as written). Its
#: comparisons, not ``state IN (...)`` (``nectar.registry.sql.ACTIVE``, the same states): SQLite evaluates a partial
#: index's condition on each row written, and made a temporary table of an ``IN`` list's values in each statement that
#: inserted or changed a run (a bounded insert of a new run, the statement alone: ~227k -> ~198k instructions)
ONE_ACTIVE = "(state = 'PENDING' OR state = 'RUNNING' OR state = 'WAITING')"
#: a run has ended (every state not in :data:`ONE_ACTIVE`): the condition of the index ``runs_by_key`` (from version
#: 15), which a query repeats, as written, to be answered from it
ENDED = "(state = 'DONE' OR state = 'FAILED' OR state = 'CANCELLED')"
#: the active run of a key (its one: the index ``runs_one_active_per_key`` answers it), the key its one parameter
ACTIVE_OF_KEY = f"key = ? AND {ONE_ACTIVE}"


def latest_of_key(row_id: str, written: str) -> str:
    """The condition that selects a key's latest run by its ``row_id`` (``id``, or SQLite's ``rowid``), the key its
    two parameters: the key's active run if it has one (``runs_one_active_per_key``), else its ended run written last
    (``runs_by_key``, which holds ended runs only: a submission writes no entry there), by ``written``, the run's
    place in the order the registry wrote the runs (SQLite's rowid; PostgreSQL's ``written``, drawn from a sequence
    by the insert: :data:`RUNS_WRITTEN`), not by its queue time: ``queued_at`` is the wall clock of the node that
    queued it, which may step back (NTP, a resumed VM) or differ from another node's, and two processes' runs of one
    clock reading (one millisecond of their ids) are in no order. COALESCE reads its second query only when the first
    found none, in SQLite and PostgreSQL. An active run is its key's latest: it was written after every other run of
    its key had ended (one active run a key), and so it is once it has ended, until the key's next run is written
    (a retried run's attempts are its one row, written once). Read from ``runs_by_key`` backwards (from version 17,
    :func:`runs_by_key`): no dialect sorts."""
    return (
        f"{row_id} = COALESCE((SELECT {row_id} FROM runs WHERE {ACTIVE_OF_KEY}), "
        f"(SELECT {row_id} FROM runs WHERE key = ? AND {ENDED} ORDER BY {written} DESC LIMIT 1))"
    )


def runs_by_key(written: str, carried: str) -> str:
    """The statement that makes version 17's index of a key's ended runs, in the order they were written: by
    ``written`` (:func:`latest_of_key`'s; empty where a dialect's index holds it beside each key already, SQLite's
    rowid), with ``carried`` (an ``INCLUDE``, or empty), the column that names a run's row, where the index does not
    hold it already, so that the read of the latest is answered from the index alone. Version 15's ``(key, queued_at,
    state)`` ordered ties of queue time by the state's name, 16's ``(key, queued_at)`` by SQLite's rowid or
    PostgreSQL's id (two processes' ids of one millisecond are in no order), and both put a run queued after the
    wall clock stepped back before the one queued at the later reading."""
    return f"CREATE INDEX IF NOT EXISTS runs_by_key ON runs(key{written}){carried} WHERE {ENDED}"


def steps_table(name: str) -> str:
    """The statement that makes the table of steps as ``name``, as version 1 made it (``{real}`` its floating-point
    columns' spelling): a dialect may make it anew under another layout (:data:`STEPS_BY_RUN`)."""
    return f"""CREATE TABLE IF NOT EXISTS {name} (
            run_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            task TEXT NOT NULL,
            key TEXT,
            state TEXT NOT NULL,
            executed INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at {{real}} NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (run_id, task_id)
        )"""


MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
            queued_at {real} NOT NULL,
            started_at {real},
            finished_at {real},
            worker TEXT,
            failed_step TEXT,
            error TEXT
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_key ON runs(key) WHERE state IN ('PENDING', 'RUNNING')",
        "CREATE INDEX IF NOT EXISTS runs_by_key ON runs(key, queued_at)",
        "CREATE INDEX IF NOT EXISTS runs_queue ON runs(state, queued_at)",
        steps_table("steps"),
    ),
    (  # 2: attempts, retry policy, leases
        "ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE runs ADD COLUMN retry_delay {real} NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN retry_backoff {real} NOT NULL DEFAULT 2",
        "ALTER TABLE runs ADD COLUMN not_before {real} NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN heartbeat_at {real}",
    ),
    (  # 3: listing runs newest first, by task or by state
        "CREATE INDEX IF NOT EXISTS runs_by_time ON runs(queued_at)",
        "CREATE INDEX IF NOT EXISTS runs_by_task ON runs(chain_type, chain, task, queued_at)",
    ),
    ("ALTER TABLE runs ADD COLUMN waiting_since {real}",),  # 4: since when a run waits for luigid's grant
    (  # 5: schedules, the fire times each one has dealt with, and the runs they made
        "ALTER TABLE runs ADD COLUMN schedule_id TEXT",
        "ALTER TABLE runs ADD COLUMN fire_time {real}",
        "CREATE INDEX IF NOT EXISTS runs_by_schedule ON runs(schedule_id, state) WHERE schedule_id IS NOT NULL",
        """CREATE TABLE IF NOT EXISTS schedules (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            task TEXT NOT NULL,
            definition TEXT NOT NULL,
            version INTEGER NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            cursor {real} NOT NULL,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS fires (
            schedule_id TEXT NOT NULL,
            fire_time {real} NOT NULL,
            state TEXT NOT NULL,
            run_id TEXT,
            reason TEXT,
            version INTEGER NOT NULL,
            recorded_at {real} NOT NULL,
            queued_at {real},
            backfill_id TEXT,
            PRIMARY KEY (schedule_id, fire_time)
        )""",
        "CREATE INDEX IF NOT EXISTS fires_held ON fires(schedule_id, fire_time) WHERE state = 'held'",
        "CREATE INDEX IF NOT EXISTS fires_by_backfill ON fires(backfill_id) WHERE backfill_id IS NOT NULL",
        # one row: bumped with every change of a schedule's definition or pause, so every process sees it at once
        "CREATE TABLE IF NOT EXISTS schedule_changes (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
        "INSERT INTO schedule_changes (id, version) VALUES (1, 0)",
    ),
    (  # 6: WAITING runs (active: one a key), data triggers, the objects each one has claimed, and their runs
        "ALTER TABLE runs ADD COLUMN trigger_id TEXT",
        "ALTER TABLE runs ADD COLUMN objects TEXT",
        "ALTER TABLE runs ADD COLUMN waiting_for TEXT",
        "ALTER TABLE runs ADD COLUMN wait_until {real}",
        "ALTER TABLE runs ADD COLUMN on_wait_timeout TEXT NOT NULL DEFAULT 'fail'",
        "DROP INDEX IF EXISTS runs_one_active_per_key",
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_key ON runs(key) "
        "WHERE state IN ('PENDING', 'RUNNING', 'WAITING')",
        "CREATE INDEX IF NOT EXISTS runs_waiting ON runs(not_before) WHERE state = 'WAITING'",
        "CREATE INDEX IF NOT EXISTS runs_by_trigger ON runs(trigger_id, state) WHERE trigger_id IS NOT NULL",
        """CREATE TABLE IF NOT EXISTS triggers (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            task TEXT NOT NULL,
            definition TEXT NOT NULL,
            version INTEGER NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            cursor TEXT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            polled_at {real},
            last_object TEXT,
            error TEXT
        )""",
        # an object (its key and version: ETag, or a local file's mtime) claimed once per trigger, with its run
        """CREATE TABLE IF NOT EXISTS trigger_objects (
            trigger_id TEXT NOT NULL,
            object_key TEXT NOT NULL,
            version TEXT NOT NULL,
            state TEXT NOT NULL,
            run_id TEXT,
            reason TEXT,
            modified {real},
            recorded_at {real} NOT NULL,
            PRIMARY KEY (trigger_id, object_key, version)
        )""",
        "CREATE INDEX IF NOT EXISTS trigger_objects_by_run ON trigger_objects(run_id) WHERE run_id IS NOT NULL",
    ),
    (  # 7: how many runs are PENDING, counted by the database in the transaction of each change (the queue bound)
        "CREATE TABLE IF NOT EXISTS run_queue (id INTEGER PRIMARY KEY, pending INTEGER NOT NULL)",
        "INSERT INTO run_queue (id, pending) SELECT 1, COUNT(*) FROM runs WHERE state = 'PENDING'",
        "{count_pending}",
    ),
    (  # 8: each ended attempt of a run, its outcome and error: a retried run's history, not its steps'
        """CREATE TABLE IF NOT EXISTS attempts (
            run_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            state TEXT NOT NULL,
            failed_step TEXT,
            error TEXT,
            started_at {real},
            ended_at {real} NOT NULL,
            PRIMARY KEY (run_id, attempt)
        )""",
    ),
    (  # 9: runs by state (the queue's count among them) and ended runs' durations by task, counted by the database
        "{uncount_pending}",
        "DROP TABLE IF EXISTS run_queue",
        *counts.TABLES,
        "{count_runs}",
    ),
    (  # 10: fires and claimed objects by state, their lags, and the runs triggers made, counted by the database
        *fire_counts.TABLES,
        "{count_fires}",
    ),
    (  # 11: each trigger's claimed objects, skipped ones and runs, counted by the database (its list reads no object)
        *fire_counts.TRIGGER_TABLES,
        "{count_fires}",
    ),
    ("{count_again}",),  # 12: the same counts, kept by triggers a dialect may make cheaper than 9 to 11's
    (  # 13: one active run a key, its condition written as comparisons (see ONE_ACTIVE)
        "DROP INDEX IF EXISTS runs_one_active_per_key",
        f"CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_key ON runs(key) WHERE {ONE_ACTIVE}",
    ),
    ("{steps_by_run}",),  # 14: the steps kept in the order of their primary key, where a dialect can (STEPS_BY_RUN)
    (  # 15: a key's ended runs by queue time, their state beside them (SQLite answers from the index alone): a key's
        # active run is found through runs_one_active_per_key, so a submission writes no entry here, where each wrote
        # one on a random leaf of a b-tree as large as the registry (latest_of_key)
        "DROP INDEX IF EXISTS runs_by_key",
        f"CREATE INDEX IF NOT EXISTS runs_by_key ON runs(key, queued_at, state) WHERE {ENDED}",
    ),
    (  # 16: the same, ties of queue time in the order the runs were written or made; now made anew by 17, not here
        "DROP INDEX IF EXISTS runs_by_key",
    ),
    (  # 17: a key's ended runs in the order the registry wrote them, whatever the clocks (RUNS_WRITTEN, RUNS_BY_KEY)
        "{runs_written}",
        "DROP INDEX IF EXISTS runs_by_key",
        "{runs_by_key}",
    ),
)
LATEST = len(MIGRATIONS)
#: where a migration's statements take the dialect's own that keep ``run_queue.pending`` counted
COUNT_PENDING = "{count_pending}"
#: where they take the dialect's own that drop those of :data:`COUNT_PENDING`
UNCOUNT_PENDING = "{uncount_pending}"
#: where they take the dialect's own that keep :mod:`~nectar.registry.counts`' tables
COUNT_RUNS = "{count_runs}"
#: where they take the dialect's own that keep :mod:`~nectar.registry.fire_counts`' tables
COUNT_FIRES = "{count_fires}"
#: where they take the dialect's own that replace those of :data:`COUNT_RUNS` and :data:`COUNT_FIRES` (none: they stay)
COUNT_AGAIN = "{count_again}"
#: where they take the dialect's own that keep the steps' rows in their primary key's b-tree, a run's steps together
#: (SQLite's ``WITHOUT ROWID``: a status lookup's steps one b-tree's pages, not an index's then the table's by rowid)
STEPS_BY_RUN = "{steps_by_run}"
#: where they take the dialect's own that give each run its place in the order the registry wrote the runs, where the
#: dialect keeps none of its own (SQLite's rowid is one): the runs written before numbered in the order that version
#: 16 took a key's latest by (queue time, then id), each active run after every ended one (it was written after its
#: key's ended runs), so that no key's latest changes as the schema is upgraded
RUNS_WRITTEN = "{runs_written}"
#: where they take the dialect's own that make the index of a key's ended runs in that order (:func:`runs_by_key`)
RUNS_BY_KEY = "{runs_by_key}"
#: the number of PENDING runs, kept by the triggers of :data:`COUNT_RUNS`
QUEUED = "SELECT pending FROM run_counts WHERE id = 1"
#: (versions 7 and 8) when a dialect's trigger adds ``delta`` to the count: on a run inserted PENDING, deleted
#: PENDING, on a state becoming PENDING, and leaving it (``delta``, the row's ``NEW``/``OLD`` condition)
PENDING_CHANGES: tuple[tuple[str, str, int, str], ...] = (
    ("runs_queued_insert", "INSERT", 1, "NEW.state = 'PENDING'"),
    ("runs_queued_delete", "DELETE", -1, "OLD.state = 'PENDING'"),
    ("runs_queued_enter", "UPDATE OF state", 1, "NEW.state = 'PENDING' AND OLD.state <> 'PENDING'"),
    ("runs_queued_leave", "UPDATE OF state", -1, "OLD.state = 'PENDING' AND NEW.state <> 'PENDING'"),
)

#: a run's columns, in the order of the table and of :func:`run_row`
RUN_COLUMNS: tuple[str, ...] = tuple(
    (
        "id, key, chain_type, chain, task, params, task_id, state, queued_at, started_at, finished_at, "
        "worker, failed_step, error, attempt, max_attempts, retry_delay, retry_backoff, not_before, heartbeat_at, "
        "waiting_since, schedule_id, fire_time, trigger_id, objects, waiting_for, wait_until, on_wait_timeout"
    ).split(", ")
)
RUNS = ", ".join(RUN_COLUMNS)
#: a step's columns as written (``seq``: its place among its run's steps, in the order they were first recorded)
#: a run's columns that hold a list, stored as JSON
_LISTS = ("objects", "waiting_for")
STEP_COLUMNS: tuple[str, ...] = ("run_id", "task_id", "task", "key", "state", "executed", "error", "updated_at", "seq")
#: an ended attempt's columns, in the order of :class:`~nectar.registry.model.Attempt`'s fields
ATTEMPT_COLUMNS: tuple[str, ...] = ("run_id", "attempt", "state", "failed_step", "error", "started_at", "ended_at")


def statements(version: int, real: str, own: Mapping[str, Sequence[str]]) -> list[str]:
    """The statements that bring a schema at ``version`` to :data:`LATEST`, ``{real}`` spelt ``real`` and each
    placeholder (:data:`COUNT_PENDING`, :data:`UNCOUNT_PENDING`, :data:`COUNT_RUNS`, :data:`COUNT_FIRES`,
    :data:`COUNT_AGAIN`, :data:`STEPS_BY_RUN`, :data:`RUNS_WRITTEN`, :data:`RUNS_BY_KEY`) replaced by the dialect's
    ``own`` statements for it."""
    found: list[str] = []
    for statement in (statement for migration in MIGRATIONS[version:] for statement in migration):
        found.extend(own[statement] if statement in own else [statement.format(real=real)])
    return found


def refuse_newer(found: int, known: int, where: str) -> None:
    """Stop a process whose release is older than the registry's schema (a rollback must not undo an upgrade)."""
    if found > known:
        raise RegistryTooNew(
            f"the run registry {where} has schema version {found}, newer than this release's {known}: "
            "run the newer release (or restore the registry from before the upgrade)"
        )


#: a run's fields in the order of :data:`RUN_COLUMNS`, read at once (a submission's hot path)
_RUN_FIELDS = operator.attrgetter(*RUN_COLUMNS)
#: where :func:`run_row` puts the values it writes otherwise than as they are
_PARAMS, _STATE = RUN_COLUMNS.index("params"), RUN_COLUMNS.index("state")
_LIST_PLACES = tuple(RUN_COLUMNS.index(name) for name in _LISTS)
#: a state by its value, without the enum's own call
_STATES: dict[str, RunState] = {state.value: state for state in RunState}


def params_json(params: Mapping[str, Any]) -> str:
    """A run's parameters as the registry stores them (``json.dumps``'s text), written at once where every name and
    value is a string (:func:`~nectar.keys.strings_object`)."""
    try:
        return strings_object(params.items(), ", ", ": ")
    except TypeError:
        return json.dumps(dict(params))


def run_row(run: Run) -> list[Any]:
    """A run's values, in the order of :data:`RUN_COLUMNS`."""
    values = list(_RUN_FIELDS(run))
    values[_PARAMS] = params_json(run.params)
    values[_STATE] = run.state.value
    for place in _LIST_PLACES:
        items = values[place]
        values[place] = None if items is None else json.dumps(list(items))
    return values


def run_of(row: Any) -> Run | None:
    """The run a row of :data:`RUN_COLUMNS` holds, in their order (None for no row): :class:`Run`'s fields are in
    that order (tests/nectar/test_status_reads.py), so it is built from the row's values by place, without a
    mapping by name (a status lookup's hot path: 11 -> 5 us), and its fields set at once, not one by one
    (~12 -> ~7.5 us)."""
    if row is None:
        return None
    found = list(row.values()) if isinstance(row, dict) else list(row)
    found[_PARAMS] = json.loads(found[_PARAMS])
    state = found[_STATE]
    found[_STATE] = _STATES.get(state) or RunState(state)
    for place in _LIST_PLACES:
        if found[place] is not None:
            found[place] = tuple(json.loads(found[place]))
    return made_at_once(Run, zip(RUN_COLUMNS, found, strict=True))  # a row of another length raises, as Run(*found)


class RunStatus(NamedTuple):
    """A run as a status lookup answers it: the columns of its row that the answer reads (:data:`STATUS_COLUMNS`, in
    the order of these fields), not a :class:`Run`'s 28. Its parameters are kept as stored, JSON text, and parsed
    only when asked (:attr:`params`: for a task whose outputs are not its ``out.txt``)."""

    id: str
    task_id: str
    state: RunState
    #: the ``params`` column: the parameters' JSON
    params_json: str
    started_at: float | None
    #: ``host:pid`` of the process executing the current attempt
    worker: str | None
    failed_step: str | None
    error: str | None
    attempt: int
    max_attempts: int
    not_before: float
    heartbeat_at: float | None
    waiting_since: float | None
    schedule_id: str | None
    fire_time: float | None
    trigger_id: str | None
    objects: tuple[str, ...] | None
    waiting_for: tuple[str, ...] | None
    wait_until: float | None

    @property
    def params(self) -> dict[str, str]:
        """The run's parameters, as :attr:`Run.params`."""
        return json.loads(self.params_json)

    @property
    def retry_at(self) -> float | None:
        """As :attr:`Run.retry_at`."""
        return self.not_before if self.state == RunState.PENDING and self.attempt else None


#: the columns of a run a status lookup reads, in the order of :class:`RunStatus`'s fields
STATUS_COLUMNS: tuple[str, ...] = tuple("params" if name == "params_json" else name for name in RunStatus._fields)
_STATUS_STATE = STATUS_COLUMNS.index("state")
_STATUS_LISTS = tuple(STATUS_COLUMNS.index(name) for name in _LISTS)


class StepStatus(NamedTuple):
    """A step as a status answers it: the columns of its row the answer reads (:data:`STATUS_STEP_COLUMNS`), not a
    :class:`~nectar.registry.model.Step`'s run id, luigi task id and time of its last change."""

    task: str
    key: str | None
    #: one of :data:`~nectar.registry.model.STEP_STATES`
    state: str
    executed: bool
    error: str | None


#: the columns of a step a status lookup reads, in the order of :class:`StepStatus`'s fields
STATUS_STEP_COLUMNS: tuple[str, ...] = StepStatus._fields


#: a :class:`StepStatus` of its fields' values, made by ``tuple``'s own constructor (NamedTuple's is a Python function
#: around it, which names each field)
_STEP_STATUS = partial(tuple.__new__, StepStatus)


def step_statuses(rows: Sequence[Sequence[Any]], start: int) -> list[StepStatus]:
    """The :class:`StepStatus` of each row, whose values from ``start`` on are :data:`STATUS_STEP_COLUMNS`' (then one
    more, left out): ``executed`` stored as 0 or 1. All at once, one call for a run's steps."""
    return [
        _STEP_STATUS((task, key, state, bool(executed), error))
        for task, key, state, executed, error, _ in (row[start:] for row in rows)
    ]


def run_status_of(row: Sequence[Any]) -> RunStatus:
    """The :class:`RunStatus` of a row of :data:`STATUS_COLUMNS`' values, in their order: its state an enum, its
    lists tuples, its parameters left as stored."""
    found = list(row)
    state = found[_STATUS_STATE]
    found[_STATUS_STATE] = _STATES.get(state) or RunState(state)
    for place in _STATUS_LISTS:
        if found[place] is not None:
            found[place] = tuple(json.loads(found[place]))
    return RunStatus._make(found)  # a row of another length raises


def values(row: Any) -> tuple[Any, ...]:
    """A row's values in column order, whether the row is a mapping (psycopg) or a sequence (sqlite3.Row)."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def param_marks(columns: Sequence[str]) -> str:
    """``?, ?, ...``: one parameter marker per column."""
    return ", ".join("?" * len(columns))
