"""SQLite's counting triggers of schema 12: a registry of schema 11 upgrades to them with its counts exact, and they
follow every change of a counted row, those no code path makes included (each count checked against a scan)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

from nectar.registry import RunState
from nectar.registry.schema import MIGRATIONS, RUN_COLUMNS, RUNS, param_marks, run_row
from nectar.registry.sqlite import OWN_STATEMENTS, SCHEMA_VERSION, SQLiteRunStore
from tests.helpers.registries import closed_at_end
from tests.nectar.test_fire_counts import both_right
from tests.nectar.test_queue_count import every_change, new_run

FIRES = "schedule_id, fire_time, state, run_id, reason, version, recorded_at, queued_at, backfill_id"
OBJECTS = "trigger_id, object_key, version, state, run_id, reason, modified, recorded_at"


def registry_of_schema_11(path: Path) -> sqlite3.Connection:
    """A registry file as schema 11 made it (its triggers those of versions 9 to 11), and a connection to it."""
    lite = sqlite3.connect(path, isolation_level=None)
    for statement in (statement for migration in MIGRATIONS[:11] for statement in migration):
        for text in OWN_STATEMENTS[statement] if statement in OWN_STATEMENTS else [statement.format(real="REAL")]:
            lite.execute(text)
    lite.execute("PRAGMA user_version = 11")
    return lite


def write_every_kind(lite: sqlite3.Connection) -> None:
    """Runs in every state (ended ones timed, of two tasks, and one untimed), fires in every state, lagged or not,
    and claimed objects in every state, several of a run: written, changed and deleted under schema 11's triggers."""
    now = time.time()
    runs = [
        dataclasses.replace(new_run(100 + i, state=state), task=task, started_at=start, finished_at=end)
        for i, (state, task, start, end) in enumerate(
            [
                (RunState.PENDING, "ATask", None, None),
                (RunState.RUNNING, "ATask", now - 5, None),
                (RunState.WAITING, "ATask", None, None),
                (RunState.DONE, "ATask", now - 0.3, now),
                (RunState.DONE, "BTask", now - 40.0, now),
                (RunState.FAILED, "BTask", now - 3000.0, now),
                (RunState.DONE, "ATask", None, now),  # ended, never started: not timed
                (RunState.CANCELLED, "ATask", None, now),
                (RunState.PENDING, "BTask", None, None),
                (RunState.RUNNING, "BTask", now - 1, None),
            ]
        )
    ]
    lite.executemany(f"INSERT INTO runs ({RUNS}) VALUES ({param_marks(RUN_COLUMNS)})", map(run_row, runs))
    lite.execute("UPDATE runs SET state = 'DONE', finished_at = ? WHERE id = ?", (now + 2, runs[1].id))
    lite.execute("UPDATE runs SET state = 'RUNNING', started_at = ? WHERE id = ?", (now, runs[0].id))
    lite.execute("DELETE FROM runs WHERE id = ?", (runs[4].id,))
    lite.executemany(
        f"INSERT INTO fires ({FIRES}) VALUES (?, ?, ?, ?, NULL, 1, ?, ?, NULL)",
        [
            ("s9", 100.0, "queued", runs[0].id, 100.3, 100.2),
            ("s9", 160.0, "done", runs[3].id, 170.0, 165.0),
            ("s9", 220.0, "skipped", None, 230.0, None),
            ("s9", 280.0, "held", None, 280.0, None),
            ("s9", 340.0, "held", None, 340.0, None),
        ],
    )
    lite.execute(
        "UPDATE fires SET state = 'queued', run_id = ?, queued_at = 341.5 WHERE fire_time = 340.0", (runs[8].id,)
    )
    lite.executemany(
        f"INSERT INTO trigger_objects ({OBJECTS}) VALUES (?, ?, 'v1', ?, ?, NULL, ?, ?)",
        [
            ("t9", "in/a", "queued", runs[0].id, 90.0, 101.0),
            ("t9", "in/b", "queued", runs[0].id, None, 101.0),
            ("t9", "in/c", "done", None, 95.0, 102.0),
            ("t9", "in/d", "skipped", runs[2].id, 96.0, 103.0),
            ("t8", "in/a", "queued", runs[8].id, 99.0, 112.0),
        ],
    )
    lite.execute("UPDATE trigger_objects SET state = 'skipped' WHERE object_key = 'in/b'")


def test_a_registry_of_schema_11_keeps_its_counts_exact_when_it_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    lite = registry_of_schema_11(path)
    write_every_kind(lite)
    lite.close()

    upgraded = closed_at_end(SQLiteRunStore(path))
    look = sqlite3.connect(path)
    assert look.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 17
    views = {name for (name,) in look.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    look.close()
    assert views == {"run_changes", "fire_changes", "object_changes"}
    both_right(upgraded)
    assert upgraded.count_by_state() == {
        RunState.PENDING: 1,
        RunState.RUNNING: 2,
        RunState.WAITING: 1,
        RunState.DONE: 3,
        RunState.FAILED: 1,
        RunState.CANCELLED: 1,
    }
    durations = upgraded.durations()
    assert (durations["t/c_chain/ATask"].count, durations["t/c_chain/BTask"].count) == (2, 1)
    with upgraded._db() as db:  # every run deleted, then every path of a run's life on the upgraded triggers
        db.execute("DELETE FROM runs")
    assert both_right(upgraded) == 0
    every_change(upgraded, both_right)


def test_the_counts_follow_changes_no_code_path_makes(tmp_path: Path) -> None:
    """A counted row changed by hand: a run moved to another task, or changed to the state it has; a fire's time
    moved; an object moved to another trigger and run; rows deleted. Each count equals a scan after each."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    with sqlite3.connect(path, isolation_level=None) as lite:
        write_every_kind(lite)
    lite.close()
    both_right(runs)
    for change in (
        "UPDATE runs SET task = 'CTask' WHERE state IN ('DONE', 'FAILED')",
        "UPDATE runs SET state = state, started_at = started_at",
        "UPDATE runs SET started_at = started_at - 100 WHERE task = 'CTask'",
        "UPDATE runs SET state = 'PENDING', started_at = NULL, finished_at = NULL WHERE state = 'FAILED'",
        "UPDATE fires SET fire_time = fire_time - 1 WHERE state = 'queued'",
        "UPDATE fires SET state = state, queued_at = queued_at",
        "UPDATE trigger_objects SET trigger_id = 't8', run_id = NULL WHERE object_key = 'in/c'",
        "UPDATE trigger_objects SET trigger_id = 't7' WHERE trigger_id = 't9' AND object_key = 'in/a'",
        "UPDATE trigger_objects SET run_id = (SELECT run_id FROM trigger_objects WHERE trigger_id = 't8' "
        "AND run_id IS NOT NULL) WHERE object_key = 'in/d'",
        "UPDATE trigger_objects SET state = 'queued', modified = recorded_at - 0.1",
        "DELETE FROM trigger_objects WHERE trigger_id = 't8'",
        "DELETE FROM fires WHERE state = 'held'",
        "DELETE FROM runs WHERE task = 'CTask'",
    ):
        with runs._db() as db:
            db.execute(change)
        both_right(runs)
