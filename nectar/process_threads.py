"""The process's own threads that a run's work may start (the registry's checkpointer, its write turn's waiter):
marked here, where the registry marks them without importing :mod:`nectar.reuse` (and luigi under it), which reads
them when it checks what a run left behind."""

from __future__ import annotations

import os
import threading
import weakref

from nectar.config import get_settings
from nectar.errors import InvalidSetting

#: threads of the process's own that a run's work may start, which then wait for more run after run: never what a
#: run left behind (:func:`process_thread`)
PROCESS_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def process_thread(thread: threading.Thread, registry: str | None = None) -> threading.Thread:
    """Mark ``thread`` as the process's own, not a run's, though a run's work may start it (the registry's
    checkpointer, woken by a run's writes: :mod:`nectar.registry.sqlite_checkpoints`): a process whose run started it
    still takes another (:func:`nectar.reuse.left_behind`). A thread of a ``registry`` file is the process's own only
    for the registry its settings name: one of another file is a run's (its code opened a registry of its own), and
    its process is retired as for any thread a run leaves. Answers ``thread``."""
    if registry is None or _own_registry(registry):
        PROCESS_THREADS.add(thread)
    return thread


def _own_registry(path: str) -> bool:
    """Whether ``path`` is the SQLite registry the process's settings name (none where they name PostgreSQL); where
    its settings cannot be read (a process that is no role of ours), any is."""
    try:
        settings = get_settings()
    except InvalidSetting:
        return True
    return not settings.database_url and os.path.realpath(path) == os.path.realpath(settings.registry_path)
