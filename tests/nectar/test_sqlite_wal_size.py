"""A SQLite registry's WAL that a reader's held snapshot grew is cut back to ``WAL_BYTES_KEPT`` as it starts over,
not kept at its largest for as long as the service runs (``journal_size_limit``: nectar.registry.sqlite)."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from nectar.registry import sqlite, sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end
from tests.nectar.test_runs import new_run

#: a hang guard, seconds
GUARD = 60.0
KEPT = 2**20


def test_a_wal_a_held_snapshot_grew_is_cut_back_as_it_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "WAL_BYTES_KEPT", KEPT)
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 20)
    monkeypatch.setattr(sqlite_checkpoints, "COPY_FRAMES", 0)  # each wake copies
    path = tmp_path / "runs.sqlite3"
    wal = Path(f"{path}-wal")
    store = closed_at_end(SQLiteRunStore(path))
    numbers = itertools.count()
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM runs").fetchone()  # its snapshot, held: no frame after it is copied
        while wal.stat().st_size <= 4 * KEPT:  # ~100 submissions, 8-11 frames each
            store.submit(new_run(next(numbers)))
        reader.execute("COMMIT")  # lets go
    finally:
        reader.close()
    grown = wal.stat().st_size
    sizes: list[int] = []
    # a complete checkpoint, then a writer that starts the WAL over (unless a read mark was held at that moment: then
    # after the next complete one)
    while len(sizes) < 5 and (not sizes or sizes[-1] > KEPT):
        made = store.checkpoints.made + 1
        for _ in range(20):
            store.submit(new_run(next(numbers)))
        assert store.checkpoints.wait_made(made, GUARD)
        store.submit(new_run(next(numbers)))
        sizes.append(wal.stat().st_size)
    assert sizes[-1] <= KEPT < grown, (grown, sizes)
