"""A new SQLite registry is made at once in the schema the migrations reach (nectar/registry/sqlite_fresh.py), and
that schema is the migrations': the same ``sqlite_master`` and rows as a file the migrations were replayed in, from
the first or from an older version (an upgrade)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from nectar.registry.schema import LATEST, MIGRATIONS, statements
from nectar.registry.sqlite import OWN_STATEMENTS, SCHEMA_VERSION, SQLiteRunStore
from nectar.registry.sqlite_fresh import FRESH, dump, fresh_statements, parsed, replayed

REGENERATE = "write it anew: python -m nectar.registry.sqlite_fresh"


def schema_of(path: Path) -> tuple[int, list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]]]:
    """A registry file's version, its ``sqlite_master`` (each object's type, name, table and text, in name order:
    the order objects were made in may differ) and every table's rows."""
    with sqlite3.connect(path) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        master = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        rows = {name: sorted(db.execute(f'SELECT * FROM "{name}"')) for kind, name, _, _ in master if kind == "table"}
    db.close()
    return version, master, rows


def opened(path: Path) -> None:
    """``path`` opened as a registry (made or brought up to date), then closed."""
    SQLiteRunStore(path).close()


def test_a_new_registry_makes_each_object_once(tmp_path: Path) -> None:
    # SQLite adds one to the schema's cookie with each change of the schema: a replay of the migrations made 118
    # changes for its 45 objects (32 triggers made then dropped, tables altered column by column, steps made anew)
    opened(tmp_path / "runs.sqlite3")
    with sqlite3.connect(tmp_path / "runs.sqlite3") as db:
        (changes,) = db.execute("PRAGMA schema_version").fetchone()
        (objects,) = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE sql IS NOT NULL").fetchone()
    db.close()
    assert changes == objects, f"{changes} changes of the schema for {objects} objects"


def test_the_fresh_schema_is_the_migrations_own() -> None:
    # sqlite_fresh.json is what the migrations replayed leave, of this release's version, statement for statement
    with replayed(statements(0, "REAL", OWN_STATEMENTS)) as db:
        assert parsed(FRESH.read_text(encoding="utf-8")) == parsed(dump(db, LATEST)), f"{FRESH} is stale: {REGENERATE}"
    assert parsed(FRESH.read_text(encoding="utf-8"))[0] == SCHEMA_VERSION, f"{FRESH} is stale: {REGENERATE}"
    assert fresh_statements(SCHEMA_VERSION + 1) is None  # a file of another version is not used: replayed


def test_a_new_registry_and_a_replayed_one_are_the_same(tmp_path: Path) -> None:
    # the old path: every migration replayed into an empty file, as the registry did before
    replayed_path = tmp_path / "replayed.sqlite3"
    with sqlite3.connect(replayed_path, isolation_level=None) as db:
        for statement in statements(0, "REAL", OWN_STATEMENTS):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.close()
    opened(replayed_path)  # taken as up to date
    opened(tmp_path / "fresh.sqlite3")
    assert schema_of(tmp_path / "fresh.sqlite3") == schema_of(replayed_path)


def test_an_older_registry_is_upgraded_to_the_same_schema(tmp_path: Path) -> None:
    # a registry of the first version, with a run in it: opened, the migrations it has not had are replayed
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old, isolation_level=None) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement.format(real="REAL"))
        db.execute(
            "INSERT INTO runs (id, key, chain_type, chain, task, params, task_id, state, queued_at) "
            "VALUES ('r1', 'k', 'file', 'c', 't', '{}', 't()', 'DONE', 1.0)"
        )
        db.execute("PRAGMA user_version = 1")
    db.close()
    opened(old)
    opened(tmp_path / "fresh.sqlite3")
    version, master, rows = schema_of(old)
    assert (version, master) == schema_of(tmp_path / "fresh.sqlite3")[:2]
    assert [row[:8] for row in rows["runs"]] == [("r1", "k", "file", "c", "t", "{}", "t()", "DONE")]
