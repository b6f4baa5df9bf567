"""A SQLite registry's WAL whose start over was missed (a reader's mark held as the first writer after a complete
checkpoint began) is copied at the next wake of the checkpointer, whatever few of its frames are not yet copied, so
that the next writer starts it over: not left to grow by COPY_FRAMES more first (nectar.registry.sqlite_checkpoints)."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from nectar.registry import sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end
from tests.nectar.test_runs import new_run

#: a hang guard, seconds
GUARD = 60.0


def wal_frames(path: Path) -> tuple[int, int]:
    """The frames in the WAL of the registry at ``path``, and those copied, from its index."""
    with open(f"{path}-shm", "rb") as index:
        version, frames, copied = sqlite_checkpoints.WAL_INDEX.unpack(index.read(sqlite_checkpoints.WAL_INDEX.size))
    assert version == sqlite_checkpoints.WAL_INDEX_VERSION
    return frames, copied


def test_a_wal_whose_start_over_was_missed_is_copied_at_the_next_wake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 10**6)  # no wake until the WAL is set up
    monkeypatch.setattr(sqlite_checkpoints, "COPY_FRAMES", 100)
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    numbers = itertools.count()
    for _ in range(30):  # ~300 frames
        store.submit(new_run(next(numbers)))
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM runs").fetchone()  # a read mark on the WAL's last frame, held
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, frames) and frames >= 200  # every frame copied
        store.submit(new_run(next(numbers)))  # the writer after it: no start over while the mark is held
        reader.execute("COMMIT")
    frames, copied = wal_frames(path)
    assert frames > 200 and frames - copied < 100  # a long WAL, few of its frames not yet copied

    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 5)
    made = store.checkpoints.made + 1
    for _ in range(5):  # the next turn wakes the checkpointer: its turns are past CHECKPOINT_TURNS
        store.submit(new_run(next(numbers)))
    assert store.checkpoints.wait_made(made, GUARD)
    store.submit(new_run(next(numbers)))  # starts the WAL over, every frame copied
    assert wal_frames(path)[0] < 50, (wal_frames(path), store.checkpoints.synced, store.checkpoints.complete)
