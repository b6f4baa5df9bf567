"""A new SQLite registry made at once, in the schema the migrations reach, not by replaying them.

The migrations (:data:`~nectar.registry.schema.MIGRATIONS`) replayed from the first make 146 statements, among them
32 triggers made to be dropped later, tables altered column by column, ``steps`` made anew and renamed: each change
of the schema makes SQLite parse it again, ~30 ms of CPU for every new file (every ``nectar worker``, ``nectar serve``,
CLI command and test that opens a new registry). An empty file takes instead the objects the replay ends with, each
made once (:data:`FRESH`, ``sqlite_fresh.json``: ~8 ms). The replay stays for a file at an older version (an upgrade).

``sqlite_fresh.json`` is written from the replay by ``python -m nectar.registry.sqlite_fresh``: what a replay into an
empty database leaves in ``sqlite_master`` (each object's own text), in the order SQLite made them, each table's rows
after it (the counters' one row): data, a snapshot of what the migrations make, checked against them. It names the
version it is of: a file of another version is not used (the replay is: never a schema other than the migrations'),
and tests/nectar/test_idle_fresh_registry.py fails, naming the command, until it is written anew.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

#: the final schema's statements, written by :func:`main`
FRESH = Path(__file__).with_name("sqlite_fresh.json")
_WRITTEN_BY = "python -m nectar.registry.sqlite_fresh, from the migrations replayed: never edited by hand"


def dump(db: sqlite3.Connection, version: int) -> str:
    """The text of ``sqlite_fresh.json`` for the schema ``db`` holds, at ``version``: each object of its
    ``sqlite_master`` (those SQLite makes of its own, without text, left out) in the order they were made, a
    table's rows after it (an ``INSERT`` of SQLite's ``quote()`` of each value)."""
    found = []
    for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"):
        found.append(sql)
        if kind == "table":
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')]
            quoted = " || ', ' || ".join(f'quote("{column}")' for column in columns)
            found.extend(
                f'INSERT INTO "{name}" VALUES ({row})'
                for (row,) in db.execute(f'SELECT {quoted} FROM "{name}" ORDER BY 1')
            )
    return json.dumps({"written by": _WRITTEN_BY, "version": version, "statements": found}, indent=1) + "\n"


def parsed(text: str) -> tuple[int, list[str]]:
    """The version ``text`` (a :func:`dump`) names and its statements."""
    found = json.loads(text)
    return int(found["version"]), list(found["statements"])


@cache
def fresh_statements(version: int) -> tuple[str, ...] | None:
    """The statements that make an empty file's schema at ``version`` at once, or None where ``sqlite_fresh.json``
    is of another version (or missing): the caller replays the migrations."""
    try:
        written, found = parsed(FRESH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return tuple(found) if written == version else None


@contextmanager
def replayed(statements: Iterable[str]) -> Iterator[sqlite3.Connection]:
    """An in-memory database that ``statements`` were executed in (closed after)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for statement in statements:
            db.execute(statement)
        yield db
    finally:
        db.close()


def main() -> None:
    """Write ``sqlite_fresh.json`` anew from the migrations replayed into an empty database."""
    from nectar.registry.schema import LATEST, statements
    from nectar.registry.sqlite import OWN_STATEMENTS

    with replayed(statements(0, "REAL", OWN_STATEMENTS)) as db:
        FRESH.write_text(dump(db, LATEST), encoding="utf-8")
    sys.stdout.write(f"{FRESH}: schema version {LATEST}\n")


if __name__ == "__main__":
    main()
