"""SQLite's triggers that keep the counts from schema 12 on: those of :mod:`~nectar.registry.counts` and of
:mod:`~nectar.registry.fire_counts`, each count's statement written once.

SQLite parses every trigger's text on a new connection's first statement: schema 9 to 11's 28 KB of triggers were
most of what a new connection's first statement cost. Their text wrote each count for every event and row: an insert
added the new row, a delete took the old one, an update did both, each with statements of its own. Here each counted
table has a view of changes that holds no row (``run_changes``, ``fire_changes``, ``object_changes``): an insert,
delete or update of a counted row inserts into it the row's counted values (``sign`` 1 to add them, -1 to take them),
one row a statement (several would go through a temporary table), and the view's one ``INSTEAD OF`` trigger adds
them to the counts. A comparison counts as itself (0 or 1 in SQLite). A run's state is counted by the runs' own
triggers in one update of ``run_counts`` (a submission's and a claim's path, without the view); its duration
through the view, once it ended. A fire or an object changed in none of its counted values inserts nothing.
PostgreSQL keeps its own triggers (a function a table, deferred to the commit).
"""

from __future__ import annotations

from nectar.registry.counts import COUNTED_COLUMNS, DURATION_BOUNDS, STATE_COLUMNS, TASK, WITHIN, ended
from nectar.registry.fire_counts import FIRE_COLUMNS, FIRES, OBJECT_COLUMNS, OBJECTS, Counted


def _plus(column: str, change: str) -> str:
    """The assignment that adds ``change`` to ``column``."""
    return f"{column} = {column} + {change}"


def _lagged(counted: Counted, row: str) -> str:
    """The lag of ``counted``'s row ``row`` (``NEW``, ``OLD``), NULL where it has none."""
    return f"IIF({counted.lagged.format(row=row)}, {counted.lag.format(row=row)}, NULL)"


def _count(counted: Counted) -> str:
    """The update of ``counted``'s count row by a row of its view of changes (``NEW``)."""
    changes = [
        *(_plus(state, f"NEW.sign * (NEW.state = {state!r})") for state in counted.states),
        _plus("lag_n", "NEW.sign * (NEW.lag IS NOT NULL)"),
        _plus("lag_total", "NEW.sign * IFNULL(NEW.lag, 0)"),
        *(
            _plus(column, f"NEW.sign * IFNULL(NEW.lag <= {bound!r}, 0)")
            for column, bound in zip(counted.within, counted.bounds, strict=True)
        ),
    ]
    return f"UPDATE {counted.counts} SET {', '.join(changes)} WHERE id = 1"


_PAIR = "trigger_id = NEW.trigger_id AND run_id = NEW.run_id"
#: each counted table: its view of changes, the view's columns, the values of a row ``{row}`` for them, and the
#: statements that count a row of the view (``NEW``)
_COUNTED: tuple[tuple[str, str, str, str, list[str]], ...] = (
    (  # the ended runs' durations (their states are counted by the runs' own triggers, without the view)
        "runs",
        "run_changes",
        f"{', '.join(TASK)}, took",
        f"{', '.join(f'{{row}}.{column}' for column in TASK)}, {{row}}.finished_at - {{row}}.started_at",
        [
            f"INSERT INTO run_durations ({', '.join(TASK)}, n, total, {', '.join(WITHIN)}) "
            f"SELECT {', '.join(f'NEW.{column}' for column in TASK)}, NEW.sign, NEW.sign * NEW.took, "
            + ", ".join(f"NEW.sign * (NEW.took <= {bound!r})" for bound in DURATION_BOUNDS)
            + f" WHERE TRUE ON CONFLICT ({', '.join(TASK)}) DO UPDATE SET "
            + ", ".join(_plus(column, f"excluded.{column}") for column in ("n", "total", *WITHIN))
        ],
    ),
    ("fires", "fire_changes", "state, lag", f"{{row}}.state, {_lagged(FIRES, '{row}')}", [_count(FIRES)]),
    (
        "trigger_objects",
        "object_changes",
        "state, lag, trigger_id, run_id",
        f"{{row}}.state, {_lagged(OBJECTS, '{row}')}, {{row}}.trigger_id, {{row}}.run_id",
        [  # its trigger's row first (a pair's first or last object counts a run there), gone last with its last object
            _count(OBJECTS),
            "INSERT INTO trigger_counts (trigger_id, objects, skipped, runs) VALUES (NEW.trigger_id, NEW.sign, "
            "NEW.sign * (NEW.state = 'skipped'), 0) ON CONFLICT (trigger_id) DO UPDATE SET "
            + ", ".join(_plus(column, f"excluded.{column}") for column in ("objects", "skipped")),
            "INSERT INTO trigger_runs (trigger_id, run_id, objects) SELECT NEW.trigger_id, NEW.run_id, NEW.sign "
            f"WHERE NEW.run_id IS NOT NULL ON CONFLICT (trigger_id, run_id) DO UPDATE SET "
            f"{_plus('objects', 'excluded.objects')}",
            *(  # the pair's first object added, or its last taken: a run of the triggers', and of its trigger's
                f"UPDATE {counts} SET {_plus('runs', 'NEW.sign')} WHERE {which} AND "
                f"(SELECT objects FROM trigger_runs WHERE {_PAIR}) = (NEW.sign > 0)"
                for counts, which in (("object_counts", "id = 1"), ("trigger_counts", "trigger_id = NEW.trigger_id"))
            ),
            f"DELETE FROM trigger_runs WHERE {_PAIR} AND objects = 0",
            "DELETE FROM trigger_counts WHERE trigger_id = NEW.trigger_id AND objects = 0",
        ],
    ),
)
#: the columns whose change may move a row of each counted table between counts
_COLUMNS = {"runs": COUNTED_COLUMNS, "fires": FIRE_COLUMNS, "trigger_objects": OBJECT_COLUMNS}


def _run_states(*rows: str) -> str:
    """The update of ``run_counts`` that adds or takes each run of ``rows`` (``+NEW``, ``-OLD``) by its state."""
    changes = (
        f"{column} = {column} " + " ".join(f"{row[0]} ({row[1:]}.state = {state.value!r})" for row in rows)
        for state, column in STATE_COLUMNS.items()
    )
    return f"UPDATE run_counts SET {', '.join(changes)} WHERE id = 1"


def _triggers(table: str, view: str, columns: str, row: str, body: list[str]) -> list[str]:
    """The view of ``table``'s changes, its trigger, and ``table``'s triggers that insert into it, a row at a time (a
    row of a ``SELECT`` or of several ``VALUES`` would go through a temporary table first)."""
    old, new = (
        f"INSERT INTO {view} VALUES ({sign}, {row.format(row=name)})" for sign, name in (("-1", "OLD"), ("1", "NEW"))
    )
    update = f"UPDATE OF {_COLUMNS[table]}"
    events: tuple[tuple[str, str, str, list[str]], ...]
    if table == "runs":  # its state counted at once, and its duration through the view if it ended
        events = (
            ("counted_insert", "INSERT", "", [_run_states("+NEW")]),
            ("timed_insert", "INSERT", ended("NEW"), [new]),
            ("counted_delete", "DELETE", "", [_run_states("-OLD")]),
            ("timed_delete", "DELETE", ended("OLD"), [old]),
            ("counted_update", "UPDATE OF state", "OLD.state <> NEW.state", [_run_states("-OLD", "+NEW")]),
            ("untimed_update", update, ended("OLD"), [old]),
            ("timed_update", update, ended("NEW"), [new]),
        )
    else:
        changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in _COLUMNS[table].split(", "))
        events = (
            ("counted_insert", "INSERT", "", [new]),
            ("counted_delete", "DELETE", "", [old]),
            ("counted_update", update, changed, [old, new]),
        )
    nulls = ", ".join(f"NULL AS {column}" for column in columns.split(", "))
    return [
        f"CREATE VIEW {view} AS SELECT 0 AS sign, {nulls} WHERE 0",
        f"CREATE TRIGGER {view}_counted INSTEAD OF INSERT ON {view} BEGIN {'; '.join(body)}; END",
        *(
            f"CREATE TRIGGER {table}_{name} AFTER {event} ON {table} FOR EACH ROW {f'WHEN {when} ' if when else ''}"
            f"BEGIN {'; '.join(statements)}; END"
            for name, event, when, statements in events
        ),
    ]


_MADE = [statement for counted in _COUNTED for statement in _triggers(*counted)]
#: migration 12's statements: schema 9 to 11's triggers dropped (these have their names), and these views (a registry
#: brought back to an earlier version by hand may have them, with their triggers), then these made
SQLITE_TRIGGERS: list[str] = [
    *(f"DROP TRIGGER IF EXISTS {made.split()[2]}" for made in _MADE if made.startswith("CREATE TRIGGER")),
    *(f"DROP VIEW IF EXISTS {view}" for _, view, *_ in _COUNTED),
    *_MADE,
]
