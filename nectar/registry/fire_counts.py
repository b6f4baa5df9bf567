"""What the database counts as schedules fire and triggers claim objects (by state, their lags, triggers' runs).

A scrape of /metrics reads these few rows instead of grouping every fire and every claimed object (a schedule each
minute makes 525,000 fires a year). ``fire_counts`` is one row: the fires in each state and, of those that queued a
run, how many, their total lag (fire time to queued) and how many within each bound of :data:`LAG_BOUNDS`;
``object_counts`` the same of claimed objects (the lag: the object's change to its claim, within
:data:`DETECTION_BOUNDS`, of those queued whose change time is known) and how many runs the triggers made: the
(trigger, run) pairs of ``trigger_runs``, which keeps each pair's number of objects so a pair is counted once,
whatever the order its objects' rows are counted in. Triggers on ``fires`` and ``trigger_objects`` keep them in the
transaction of each change, as :mod:`~nectar.registry.counts` does for runs; on PostgreSQL each one first takes
``run_counts``' row, so counted rows are always taken after it (that module's lock order: no deadlock).
"""

from __future__ import annotations

from dataclasses import dataclass

from nectar.schedules.model import FIRE_STATES
from nectar.triggers.model import OBJECT_STATES

#: upper bounds (seconds) of the fire lag histogram's buckets (fire time -> run queued; the target is p99 <= 1 s)
LAG_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0)
#: upper bounds (seconds) of the detection lag histogram's buckets (object changed -> claimed with its run; the
#: target is p99 <= the poll interval, 10 s by default, + 1 s)
DETECTION_BOUNDS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 11.0, 15.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass(frozen=True)
class Counted:
    """A table whose rows are counted in one row of ``counts``: by ``states``, and the rows where ``lagged`` holds
    by their ``lag`` within each of ``bounds`` (``{row}`` in both: ``NEW``, ``OLD`` or the table's own name)."""

    table: str
    counts: str
    states: tuple[str, ...]
    lag: str
    lagged: str
    bounds: tuple[float, ...]

    @property
    def within(self) -> tuple[str, ...]:
        """The count row's columns of the counts within each bound, in the order of ``bounds``."""
        return tuple(f"within_{i}" for i in range(len(self.bounds)))

    def columns(self) -> str:
        """The count row's columns but ``id``: a column per state, then the lags' count, total and buckets."""
        return ", ".join([*self.states, "lag_n", "lag_total", *self.within])

    def create(self, *extra: str) -> str:
        """The count row's table (``extra``: more counts of it, before the lags)."""
        ints = [*self.states, *extra, "lag_n"]
        return (
            f"CREATE TABLE IF NOT EXISTS {self.counts} (id INTEGER PRIMARY KEY, "
            + "".join(f"{column} INTEGER NOT NULL, " for column in ints)
            + "lag_total {real} NOT NULL, "
            + ", ".join(f"{column} INTEGER NOT NULL" for column in self.within)
            + ")"
        )

    def scan(self, row: str) -> str:
        """The counts of every row of the table, as one ``SELECT`` list (``row``: how the table is named there)."""
        lag, lagged = self.lag.format(row=row), self.lagged.format(row=row)
        return ", ".join(
            [
                *(f"COUNT(CASE WHEN {row}.state = '{state}' THEN 1 END)" for state in self.states),
                f"COUNT(CASE WHEN {lagged} THEN 1 END)",
                f"COALESCE(SUM(CASE WHEN {lagged} THEN {lag} END), 0)",
                *(f"COUNT(CASE WHEN {lagged} AND {lag} <= {bound!r} THEN 1 END)" for bound in self.bounds),
            ]
        )

    def fill(self) -> str:
        """The count row, filled from the table as it is."""
        return f"INSERT INTO {self.counts} (id, {self.columns()}) SELECT 1, {self.scan(self.table)} FROM {self.table}"

    def count(self, row: str, sign: str) -> str:
        """The update of the count row that adds (``sign`` ``+``) or takes (``-``) the row ``row`` (NEW or OLD)."""
        lag, lagged = self.lag.format(row=row), self.lagged.format(row=row)
        changes = [
            *(f"{state} = {state} {sign} CASE WHEN {row}.state = '{state}' THEN 1 ELSE 0 END" for state in self.states),
            f"lag_n = lag_n {sign} CASE WHEN {lagged} THEN 1 ELSE 0 END",
            f"lag_total = lag_total {sign} CASE WHEN {lagged} THEN {lag} ELSE 0 END",
            *(
                f"{column} = {column} {sign} CASE WHEN {lagged} AND {lag} <= {bound!r} THEN 1 ELSE 0 END"
                for column, bound in zip(self.within, self.bounds, strict=True)
            ),
        ]
        return f"UPDATE {self.counts} SET {', '.join(changes)} WHERE id = 1"

    def read(self) -> str:
        """The count row's columns but ``id``, in the order of :meth:`columns`."""
        return f"SELECT {self.columns()} FROM {self.counts} WHERE id = 1"


FIRES = Counted(
    "fires", "fire_counts", FIRE_STATES, "{row}.queued_at - {row}.fire_time", "{row}.queued_at IS NOT NULL", LAG_BOUNDS
)
OBJECTS = Counted(
    "trigger_objects",
    "object_counts",
    OBJECT_STATES,
    "{row}.recorded_at - {row}.modified",
    "{row}.state = 'queued' AND {row}.modified IS NOT NULL",
    DETECTION_BOUNDS,
)
#: the runs triggers made: each (trigger, run) pair once, however many objects it has (not runs by state, which
#: :mod:`~nectar.registry.counts` keeps: a run two triggers made or joined counts for each, whatever its state)
READ_TRIGGER_RUNS = "SELECT runs FROM object_counts WHERE id = 1"


def pair(row: str) -> str:
    """The condition that finds the (trigger, run) pair of the object ``row``."""
    return f"trigger_id = {row}.trigger_id AND run_id = {row}.run_id"


def count_pair(row: str, sign: str) -> list[str]:
    """The statements that add (``sign`` ``+``) or take (``-``) the object ``row`` from its (trigger, run) pair,
    counting the pair among the triggers' runs, and its trigger's, when its first object comes, and no more when its
    last goes."""
    if sign == "+":
        return [
            "INSERT INTO trigger_runs (trigger_id, run_id, objects) "
            f"SELECT {row}.trigger_id, {row}.run_id, 1 WHERE {row}.run_id IS NOT NULL "
            "ON CONFLICT (trigger_id, run_id) DO UPDATE SET objects = trigger_runs.objects + 1",
            *(
                f"UPDATE {counts} SET runs = runs + 1 WHERE {which} AND "
                f"(SELECT objects FROM trigger_runs WHERE {pair(row)}) = 1"
                for counts, which in (("object_counts", "id = 1"), ("trigger_counts", f"trigger_id = {row}.trigger_id"))
            ),
        ]
    return [
        f"UPDATE trigger_runs SET objects = objects - 1 WHERE {pair(row)}",
        *(
            f"UPDATE {counts} SET runs = runs - 1 WHERE {which} AND "
            f"(SELECT objects FROM trigger_runs WHERE {pair(row)}) = 0"
            for counts, which in (("object_counts", "id = 1"), ("trigger_counts", f"trigger_id = {row}.trigger_id"))
        ),
        f"DELETE FROM trigger_runs WHERE {pair(row)} AND objects = 0",
    ]


def skipped(row: str) -> str:
    return f"CASE WHEN {row}.state = 'skipped' THEN 1 ELSE 0 END"


def count_trigger(row: str, sign: str) -> list[str]:
    """The statements that add (``sign`` ``+``) or take (``-``) the object ``row`` from its trigger's count row
    (made by its first object, gone with its last): before :func:`count_pair`'s when adding, after when taking."""
    if sign == "+":
        return [
            f"INSERT INTO trigger_counts (trigger_id, objects, skipped, runs) VALUES ({row}.trigger_id, 1, "
            f"{skipped(row)}, 0) ON CONFLICT (trigger_id) DO UPDATE SET objects = trigger_counts.objects + 1, "
            f"skipped = trigger_counts.skipped + {skipped(row)}"
        ]
    return [
        f"UPDATE trigger_counts SET objects = objects - 1, skipped = skipped - {skipped(row)} "
        f"WHERE trigger_id = {row}.trigger_id",
        f"DELETE FROM trigger_counts WHERE trigger_id = {row}.trigger_id AND objects = 0",
    ]


#: migration 10's tables, filled from ``fires`` and ``trigger_objects`` as they are (``{real}``: the dialect's); made
#: anew if there (a registry brought back to an earlier version by hand counts its rows again)
TABLES: tuple[str, ...] = (
    *(f"DROP TABLE IF EXISTS {table}" for table in ("fire_counts", "trigger_runs", "object_counts")),
    FIRES.create(),
    FIRES.fill(),
    "CREATE TABLE IF NOT EXISTS trigger_runs (trigger_id TEXT NOT NULL, run_id TEXT NOT NULL, "
    "objects INTEGER NOT NULL, PRIMARY KEY (trigger_id, run_id))",
    "INSERT INTO trigger_runs (trigger_id, run_id, objects) SELECT trigger_id, run_id, COUNT(*) "
    "FROM trigger_objects WHERE run_id IS NOT NULL GROUP BY trigger_id, run_id",
    OBJECTS.create("runs"),
    f"INSERT INTO object_counts (id, runs, {OBJECTS.columns()}) "
    f"SELECT 1, (SELECT COUNT(*) FROM trigger_runs), {OBJECTS.scan('trigger_objects')} FROM trigger_objects",
)
#: migration 11's: each trigger's claimed objects, skipped ones and runs (its (trigger, run) pairs), filled from
#: ``trigger_objects`` and ``trigger_runs`` as they are; the pairs found by run, for the objects whose run is active
TRIGGER_TABLES: tuple[str, ...] = (
    "DROP TABLE IF EXISTS trigger_counts",
    "CREATE TABLE trigger_counts (trigger_id TEXT PRIMARY KEY, objects INTEGER NOT NULL, skipped INTEGER NOT NULL, "
    "runs INTEGER NOT NULL)",
    "INSERT INTO trigger_counts (trigger_id, objects, skipped, runs) SELECT trigger_id, COUNT(*), "
    "COUNT(CASE WHEN state = 'skipped' THEN 1 END), 0 FROM trigger_objects GROUP BY trigger_id",
    "UPDATE trigger_counts SET runs = (SELECT COUNT(*) FROM trigger_runs WHERE "
    "trigger_runs.trigger_id = trigger_counts.trigger_id)",
    "CREATE INDEX IF NOT EXISTS trigger_runs_by_run ON trigger_runs(run_id)",
)
#: each trigger's counts (``{only}``: nothing, or a condition on ``trigger_id``)
READ_TRIGGER_COUNTS = "SELECT trigger_id, objects, runs, skipped FROM trigger_counts{only}"
#: each trigger's objects whose run has not ended (queued, waiting or running): from the active runs, not from every
#: object (``{active}``: the condition on a run's ``state`` that it is active)
READ_TRIGGER_WAITING = (
    "SELECT p.trigger_id AS trigger_id, SUM(p.objects) AS waiting FROM runs r JOIN trigger_runs p ON p.run_id = r.id "
    "WHERE r.{active} GROUP BY p.trigger_id"
)
#: the columns whose change may move a fire, or an object, between counts
FIRE_COLUMNS = "state, queued_at, fire_time"
OBJECT_COLUMNS = "state, recorded_at, modified, trigger_id, run_id"


def _taken(row: str) -> list[str]:
    return [OBJECTS.count(row, "-"), *count_pair(row, "-"), *count_trigger(row, "-")]


def _added(row: str) -> list[str]:
    return [OBJECTS.count(row, "+"), *count_trigger(row, "+"), *count_pair(row, "+")]


#: each counted table, its PostgreSQL function, the statements that take its row ``OLD`` from the counts and that
#: add its row ``NEW``, and the columns whose change may move a row between counts
COUNTED_TABLES = (
    ("fires", "nectar_count_fires", [FIRES.count("OLD", "-")], [FIRES.count("NEW", "+")], FIRE_COLUMNS),
    ("trigger_objects", "nectar_count_objects", _taken("OLD"), _added("NEW"), OBJECT_COLUMNS),
)
#: SQLite's triggers of schema 10 and 11 (12 replaces them: :mod:`~nectar.registry.sqlite_counts`): a row counted
#: when inserted, uncounted when deleted; a change, its old row uncounted and its new one counted
SQLITE_TRIGGERS: list[str] = [
    statement
    for table, _, taken, added, columns in COUNTED_TABLES
    for event, body in (("INSERT", added), ("DELETE", taken), (f"UPDATE OF {columns}", [*taken, *added]))
    for name in [f"{table}_counted_{event.split()[0].lower()}"]
    for statement in (
        f"DROP TRIGGER IF EXISTS {name}",  # a later migration's counts replace an earlier one's
        f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN {'; '.join(body)}; END",
    )
]
#: PostgreSQL's: a function per table, deferred to the commit like ``runs``' (:mod:`~nectar.registry.counts`), that
#: takes ``run_counts``' row before any of its own, so every transaction takes the counted rows in one order
GATE = "PERFORM 1 FROM run_counts WHERE id = 1 FOR NO KEY UPDATE"
POSTGRES_TRIGGERS: list[str] = [
    statement
    for table, function, taken, added, columns in COUNTED_TABLES
    for statement in (
        f"DROP TRIGGER IF EXISTS {table}_counted ON {table}",
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {GATE}; "
        f"IF TG_OP <> 'INSERT' THEN {'; '.join(taken)}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {'; '.join(added)}; END IF; "
        "RETURN NULL; END $$",
        f"CREATE CONSTRAINT TRIGGER {table}_counted AFTER INSERT OR DELETE OR UPDATE OF {columns} ON {table} "
        f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {function}()",
    )
]
