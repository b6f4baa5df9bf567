"""What the database counts as runs change (runs by state, ended runs' durations by task), and the triggers that do.

A scrape of /metrics reads these few rows instead of grouping every run, so it costs the same at 1,000 runs and
at 1,000,000. ``run_counts`` is one row, a column per state (its ``pending`` is the queue's bound); each task
with a DONE or FAILED run timed has a row of ``run_durations``: how many, their total seconds, and how many took
at most each bound of :data:`DURATION_BOUNDS`. Each dialect keeps them with triggers on ``runs``, in the
transaction of each change (:data:`SQLITE_TRIGGERS` to schema 11, then :mod:`~nectar.registry.sqlite_counts`';
:data:`POSTGRES_TRIGGERS`), so every path that inserts, updates or deletes a run is counted by construction, and a
transaction that dies takes its counts with it.

``run_counts`` is the one count of runs by state the service reads: the queue's bound (``schema.QUEUED``, SQLite's
bounded insert), :meth:`~nectar.registry.store.RunStore.queued` and the metrics
(:meth:`~nectar.registry.store.RunStore.count_by_state`). :meth:`~nectar.registry.store.RunStore.count` counts the
same thing from the runs themselves, a scan, on purpose: it is what this row is checked against
(``tests/nectar/test_queue_count.py``), on no request's path. The runs triggers made (``object_counts.runs``,
:mod:`~nectar.registry.fire_counts`) are another count: (trigger, run) pairs, whatever the run's state.
"""

from __future__ import annotations

from nectar.registry.model import RunState

#: upper bounds (seconds) of the buckets ended runs' durations are counted within (the duration histogram's)
DURATION_BOUNDS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
#: ``run_counts``' column for each state
STATE_COLUMNS = {state: state.value.lower() for state in RunState}
#: ``run_durations``' columns of the counts within each bound, in the order of :data:`DURATION_BOUNDS`
WITHIN = tuple(f"within_{i}" for i in range(len(DURATION_BOUNDS)))
TASK = ("chain_type", "chain", "task")

#: migration 9's tables, filled from ``runs`` as they are (``{real}``: the dialect's floating-point type)
TABLES: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS run_counts (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{column} INTEGER NOT NULL" for column in STATE_COLUMNS.values())
    + ")",
    f"INSERT INTO run_counts (id, {', '.join(STATE_COLUMNS.values())}) SELECT 1, "
    + ", ".join(f"COUNT(CASE WHEN state = '{state.value}' THEN 1 END)" for state in STATE_COLUMNS)
    + " FROM runs",
    "CREATE TABLE IF NOT EXISTS run_durations (chain_type TEXT NOT NULL, chain TEXT NOT NULL, task TEXT NOT NULL, "
    "n INTEGER NOT NULL, total {real} NOT NULL, "
    + "".join(f"{column} INTEGER NOT NULL, " for column in WITHIN)
    + "PRIMARY KEY (chain_type, chain, task))",
    f"INSERT INTO run_durations ({', '.join(TASK)}, n, total, {', '.join(WITHIN)}) "
    f"SELECT {', '.join(TASK)}, COUNT(*), SUM(finished_at - started_at), "
    + ", ".join(f"COUNT(CASE WHEN finished_at - started_at <= {bound!r} THEN 1 END)" for bound in DURATION_BOUNDS)
    + " FROM runs WHERE state IN ('DONE', 'FAILED') AND started_at IS NOT NULL AND finished_at IS NOT NULL "
    f"GROUP BY {', '.join(TASK)}",
)
#: the counts by state, in the order of :data:`STATE_COLUMNS`
READ_COUNTS = f"SELECT {', '.join(STATE_COLUMNS.values())} FROM run_counts WHERE id = 1"
#: every task's durations: its name, count, total and counts within each bound
READ_DURATIONS = (
    f"SELECT chain_type || '/' || chain || '/' || task, n, total, {', '.join(WITHIN)} FROM run_durations WHERE n > 0"
)


def ended(row: str) -> str:
    """Whether the run ``row`` (``NEW`` or ``OLD``) is counted among the durations: DONE or FAILED, and timed."""
    return f"{row}.state IN ('DONE', 'FAILED') AND {row}.started_at IS NOT NULL AND {row}.finished_at IS NOT NULL"


def count_state(row: str, sign: str) -> str:
    """The update of ``run_counts`` that adds (``sign`` ``+``) or takes (``-``) the run ``row`` from its state."""
    return (
        "UPDATE run_counts SET "
        + ", ".join(
            f"{column} = {column} {sign} CASE WHEN {row}.state = '{state.value}' THEN 1 ELSE 0 END"
            for state, column in STATE_COLUMNS.items()
        )
        + " WHERE id = 1"
    )


def count_duration(row: str, sign: str) -> list[str]:
    """The statements that add (``sign`` ``+``) or take (``-``) the ended run ``row`` from its task's durations."""
    took = f"({row}.finished_at - {row}.started_at)"
    where = " AND ".join(f"{column} = {row}.{column}" for column in TASK)
    update = (
        f"UPDATE run_durations SET n = n {sign} 1, total = total {sign} {took}, "
        + ", ".join(
            f"{column} = {column} {sign} CASE WHEN {took} <= {bound!r} THEN 1 ELSE 0 END"
            for column, bound in zip(WITHIN, DURATION_BOUNDS, strict=True)
        )
        + f" WHERE {where}"
    )
    if sign == "-":
        return [update]
    zeros = ", ".join("0" for _ in WITHIN)
    task = ", ".join(f"{row}.{column}" for column in TASK)
    first = (
        f"INSERT INTO run_durations ({', '.join(TASK)}, n, total, {', '.join(WITHIN)}) VALUES ({task}, 0, 0, {zeros}) "
        f"ON CONFLICT ({', '.join(TASK)}) DO NOTHING"
    )
    return [first, update]


#: the columns whose change may move a run between counts
COUNTED_COLUMNS = "state, started_at, finished_at, chain_type, chain, task"
#: SQLite's triggers of schema 9 to 11 (12 replaces them: :mod:`~nectar.registry.sqlite_counts`): a state counted
#: when a run is inserted, deleted or changes state; a duration when an ended run is inserted, deleted, or a change
#: makes it ended or no longer (its old duration taken, its new one added)
SQLITE_TRIGGERS: list[str] = [
    f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON runs FOR EACH ROW {when}BEGIN {'; '.join(body)}; END"
    for name, event, when, body in (
        ("runs_counted_insert", "INSERT", "", [count_state("NEW", "+")]),
        ("runs_counted_delete", "DELETE", "", [count_state("OLD", "-")]),
        (
            "runs_counted_update",
            "UPDATE OF state",
            "WHEN OLD.state <> NEW.state ",
            [count_state("OLD", "-"), count_state("NEW", "+")],
        ),
        ("runs_timed_insert", "INSERT", f"WHEN {ended('NEW')} ", count_duration("NEW", "+")),
        ("runs_timed_delete", "DELETE", f"WHEN {ended('OLD')} ", count_duration("OLD", "-")),
        ("runs_untimed_update", f"UPDATE OF {COUNTED_COLUMNS}", f"WHEN {ended('OLD')} ", count_duration("OLD", "-")),
        ("runs_timed_update", f"UPDATE OF {COUNTED_COLUMNS}", f"WHEN {ended('NEW')} ", count_duration("NEW", "+")),
    )
]
#: PostgreSQL's: one function for every change, deferred to the commit (so a transaction takes the rows of the
#: counts last and holds them only while it commits), ``run_counts``' one row always before a task's durations (so
#: two transactions never take them in opposite orders)
POSTGRES_TRIGGERS: list[str] = [
    "CREATE OR REPLACE FUNCTION nectar_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND NOT ({ended('OLD')}) AND NOT ({ended('NEW')}) "
    "THEN RETURN NULL; END IF; "
    f"IF TG_OP <> 'INSERT' THEN {count_state('OLD', '-')}; END IF; "
    f"IF TG_OP <> 'DELETE' THEN {count_state('NEW', '+')}; END IF; "
    f"IF TG_OP <> 'INSERT' AND {ended('OLD')} THEN {'; '.join(count_duration('OLD', '-'))}; END IF; "
    f"IF TG_OP <> 'DELETE' AND {ended('NEW')} THEN {'; '.join(count_duration('NEW', '+'))}; END IF; "
    "RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER runs_counted AFTER INSERT OR DELETE OR UPDATE OF "
    f"{COUNTED_COLUMNS} ON runs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION nectar_count_runs()",
]
