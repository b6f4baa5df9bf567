"""A SQLite registry refused as it is opened (a newer release's schema) leaves nothing of the process's on the file:
its turn at writing (``_WRITERS``) was kept until the process's end, a descriptor of the file's lock with it
(suitecli's finding, round 68: a long-lived process that is refused and goes on, a test's process, held it)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from nectar.errors import RegistryTooNew
from nectar.registry import sqlite as registry_sqlite
from nectar.registry.sqlite import SCHEMA_VERSION, SQLiteRunStore


def test_a_registry_refused_as_newer_holds_no_turn_of_this_process(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteRunStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RegistryTooNew):
        SQLiteRunStore(path)
    assert (os.getpid(), str(path)) not in registry_sqlite._WRITERS
