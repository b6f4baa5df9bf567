"""A status lookup's read in SQLite: a key's latest run and all its steps in one row of seven columns.

The sqlite3 module lets go of the GIL around each column it fetches (``sqlite3_column_type``, CPython 3.11) and
each step of a statement: under load, each a chance for another of an API worker's threads to take it, and a
futex call to wake one. The read every dialect speaks (:func:`~nectar.registry.reads.status_read_sql`) is a row per
step of 25 columns: 28 such calls for a run of one step, here 10. Here the run's columns that are not times, and its
steps (each ``[task, key, state, executed, error, seq]``, by ``json_group_array``), are one JSON array, parsed by one
``json.loads``; the run's times are columns of their own (:data:`~nectar.registry.schema.STATUS_TIMES`): SQLite's
JSON writes a float to 15 significant digits, where a time needs 17 to come back as written."""

from __future__ import annotations

import json
from typing import Any

from nectar.registry.reads import latest_run, row_seq
from nectar.registry.schema import (
    STATUS_COLUMNS,
    STATUS_LISTS,
    STATUS_STEP_COLUMNS,
    STATUS_TIMES,
    RunStatus,
    StepStatus,
    run_status_of,
    step_statuses,
)

#: the run's columns in the JSON array (all but its times), a list as JSON in it (``json()``: not a string of it)
_PACKED = ", ".join(f"json(r.{c})" if c in STATUS_LISTS else f"r.{c}" for c in STATUS_COLUMNS[: -len(STATUS_TIMES)])
#: the run's steps, an array of each one's columns and its ``seq``, in no order (SQLite 3.40 has no ORDER BY in
#: an aggregate; a subquery's ORDER BY was a temporary B-tree built for every lookup): put in order in Python
_STEPS = (
    f"SELECT json_group_array(json_array({', '.join(f's.{c}' for c in STATUS_STEP_COLUMNS)}, s.seq)) "
    "FROM steps AS s WHERE s.run_id = r.id"
)
#: the read: one row (no run: none), the JSON array of the run's fields and, last in it, its steps; then its times
STATUS_READ = (
    f"SELECT json_array({_PACKED}, ({_STEPS})), {', '.join(f'r.{c}' for c in STATUS_TIMES)} "
    f"FROM runs AS r WHERE {latest_run('rowid')}"
)


def status_of(rows: list[tuple[Any, ...]]) -> tuple[RunStatus | None, list[StepStatus]]:
    """The run and steps of the rows :data:`STATUS_READ` selected: the last recorded step first."""
    if not rows:
        return None, []
    ((packed, *times),) = rows
    found = json.loads(packed)
    steps = found.pop()
    if len(steps) > 1:
        steps.sort(key=row_seq, reverse=True)
    return run_status_of(found + times, lists_parsed=True), step_statuses(steps, 0)
