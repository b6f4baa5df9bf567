"""The SQLite registries a test opened, closed at its end, and what the guard counts: this process's descriptors of
registry files (a test that left them open made an xdist worker hold ~940 descriptors by the end of ``tests/nectar``;
one past 1,024 failed a ``select()``)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from nectar import steps
from nectar.registry import sqlite, sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore

#: the files beside a registry ``<file>`` that its connections, its process's turn and its word that a run was queued
#: open (SQLite's WAL and WAL index, our writers' turn, ``-queued``: a store's close closes each)
BESIDE = ("-wal", "-shm", "-journal", "-writer", "-queued")
#: what ``/proc/self/fd`` names a watch of the kernel's (on the word that a run was queued: :func:`.wakeup.changes`)
INOTIFY = "anon_inode:inotify"
#: the names a registry file takes in the tests (``NECTAR_DATA_DIR``'s ``runs.sqlite3``, and tests' own)
NAMES = (".sqlite3", ".sqlite", ".db")

#: every SQLite registry made in this process since the last :func:`close_opened` (its test's)
_OPENED: list[SQLiteRunStore] = []
_made: Callable[[SQLiteRunStore, Path], None] = SQLiteRunStore.__init__


def _kept(store: SQLiteRunStore, path: Path) -> None:
    """:class:`SQLiteRunStore`'s own ``__init__``, then the store noted for :func:`close_opened` (however a test made
    it: directly, through ``open_run_store``, a ``Nectar``, an app or an executor in the test process)."""
    _made(store, path)
    _OPENED.append(store)


SQLiteRunStore.__init__ = _kept  # type: ignore[method-assign,assignment]


def descriptors(pid: int | str = "self") -> dict[int, str]:
    """The descriptors of process ``pid`` (this one's by default), each with what it is open on (a path,
    ``socket:[…]``, ``pipe:[…]``, ``anon_inode:…``; ``/proc/<pid>/fd``: one listing, a readlink each)."""
    found = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # the listing's own, or one closed since
            pass
    return found


def is_registry(target: str) -> bool:
    """Whether a descriptor open on ``target`` is one of a registry's: its file, one beside it, or a watch of the
    kernel's (a store's on its word that a run was queued; no test's own outlives the test)."""
    path = target.removesuffix(" (deleted)")
    return target == INOTIFY or path.endswith(BESIDE + NAMES) or os.path.exists(f"{path}-writer")


def left_open(before: dict[int, str]) -> list[str]:
    """The registry files this process has descriptors of that it had not in ``before`` (:func:`descriptors`); a
    collection first if any is found (a registry no longer referenced may wait in a cycle to be freed)."""
    for collected in (False, True):
        if collected:
            gc.collect()
        now = descriptors()
        found = sorted(target for fd, target in now.items() if before.get(fd) != target and is_registry(target))
        if not found:
            break
    return found


def holds(store: SQLiteRunStore) -> bool:
    """Whether ``store`` holds anything of this process's that its close lets go: a connection (the one that writes,
    an idle one that reads, the calling thread's own), its word that a run was queued, or its turn at writing."""
    own = store._own()
    return (
        own.writes is not None
        or bool(own.idle)
        or own.queues is not None
        or own.changes is not None
        or getattr(store._local, "conn", None) is not None
        or (os.getpid(), str(store.path)) in sqlite._WRITERS
    )


def left_unclosed() -> list[SQLiteRunStore]:
    """The registries made since the last :func:`close_opened` that still hold what their close lets go (their
    test, or its fixture, made them and never closed them)."""
    return [store for store in _OPENED if holds(store)]


class Closable(Protocol):
    def close(self) -> None: ...


Owned = TypeVar("Owned", bound=Closable)
Found = TypeVar("Found")


def known(found: Found | None) -> Found:
    """``found`` (a run a registry read, a claim, a task luigid answered), which the test knows is there: an
    AssertionError if it is None, else the same thing, typed without its None."""
    assert found is not None, "not found"
    return found


#: what the running test said it owns and has closed at its end (:func:`closed_at_end`)
_OWNED: list[Closable] = []


def closed_at_end(thing: Owned) -> Owned:
    """``thing`` (a registry, a ``Nectar``, an executor, a test's holder of one), handed back as it is and closed at
    the test's end, the last first (:func:`close_owned`, by ``tests/conftest.py``'s ``registries_closed``): how a test
    says it owns what it opened where one ``with`` is not the way (several, one made in a helper or a fixture)."""
    _OWNED.append(thing)
    return thing


def close_owned() -> None:
    """Close what the test that ends said it owns (:func:`closed_at_end`), the last first."""
    while _OWNED:
        _OWNED.pop().close()


def forget_opened() -> None:
    """Not close the registries made so far (made before the test: they are not its own)."""
    _OPENED.clear()


def close_opened() -> None:
    """Close every registry made since the last call (:meth:`SQLiteRunStore.close`: its checkpoints, its turn, its
    idle connections), those of the test that ends; and forget the step recorder an attempt run in this process
    installed (:meth:`~nectar.steps.StepRecorder.install`: a worker's next run installs its own; a test's held its
    run's registry for the rest of the session)."""
    steps._recorder = None
    opened = list(_OPENED)
    _OPENED.clear()
    for store in opened:
        store.close()
    sqlite_checkpoints.release()  # the WAL indexes' descriptors kept while a lock was on their file (a test's own)
