"""A SQLite registry's WAL is checkpointed by a thread of the process that writes, never in a writer's COMMIT, and
starts over once a checkpoint copied every frame (nectar.registry.sqlite_checkpoints)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nectar.registry import sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.nectar.test_runs import new_run

#: SQLite's own mark for its automatic checkpoint, in WAL frames (``wal_autocheckpoint``'s default)
AUTOCHECKPOINT = 1_000
#: bytes of a WAL frame (a 4 KiB page and its 24-byte header) and of the WAL's header
FRAME, HEADER = 4096 + 24, 32
#: a hang guard, seconds
GUARD = 60.0


def wal_frames(path: Path) -> int:
    """The frames in the WAL of the registry at ``path`` (a checkpoint's count of them, made by another connection:
    it copies what it may and counts the rest)."""
    with sqlite3.connect(path, isolation_level=None) as look:
        busy, frames, _ = look.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    look.close()
    assert not busy
    return int(frames)


def test_a_writers_commit_never_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 250)
    path = tmp_path / "runs.sqlite3"
    store = SQLiteRunStore(path)
    for n in range(249):  # ~8 frames each: ~2,000
        store.submit(new_run(n))
    wal = Path(f"{path}-wal").stat().st_size
    assert wal > HEADER + 1.5 * AUTOCHECKPOINT * FRAME, "a commit checkpointed (the WAL started over)"
    assert store.checkpoints.made == 0
    store.submit(new_run(249))  # the 250th turn wakes the checkpointer
    wal = Path(f"{path}-wal").stat().st_size
    assert store.checkpoints.wait_made(1, GUARD)
    assert store.checkpoints.complete == 1
    store.submit(new_run(250))  # the first writer after a complete checkpoint writes the WAL from its start
    assert wal_frames(path) < 50
    assert Path(f"{path}-wal").stat().st_size == wal  # written again from its start, never longer


def test_the_wal_grows_while_a_reader_holds_a_snapshot_and_starts_over_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 20)
    path = tmp_path / "runs.sqlite3"
    store = SQLiteRunStore(path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # its snapshot, held
        for made in range(1, 6):  # 5 checkpoints, each after 20 turns (a wake while one runs is the same one)
            for n in range(20 * made - 20, 20 * made):
                store.submit(new_run(n))
            assert store.checkpoints.wait_made(made, GUARD)
        assert store.checkpoints.complete == 0  # nothing after the reader's snapshot was copied
        held = wal_frames(path)
        assert held > 400  # the 100 runs' frames, all kept
        reader.execute("COMMIT")  # lets go
    finally:
        reader.close()
    for n in range(100, 120):
        store.submit(new_run(n))
    assert store.checkpoints.wait_made(6, GUARD)
    assert store.checkpoints.complete == 1
    store.submit(new_run(120))
    assert wal_frames(path) < 50  # started over
