"""One ``nectar worker`` a module's tests share (CONTRIBUTING "(round 68, suitenectarB)"): where each test submits
runs of chain files of its own and reads only them, the worker, its spares and its registry need not be new for it.
A test that stops, kills, reconfigures or counts the worker's processes keeps a worker of its own (``start_worker``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import NECTAR, STOP_TIMEOUT, Processes, settings_env, wait_until
from nectar.config import Settings
from nectar.registry import sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.console import started_worker


def module_settings(folder: Path, **changes: Any) -> Settings:
    """Local stores in ``folder`` (its ``chains`` folder empty until a test writes one), the values of conftest's
    ``settings`` a worker reads (no retry, a lease no late heartbeat outlasts, a short drain), and ``changes``."""
    (folder / "chains").mkdir(parents=True, exist_ok=True)
    value = Settings(env="local", chains_dir=folder / "chains", data_dir=folder / "data", retries=0)
    changes = {"heartbeat_interval": 0.5, "lease_timeout": 600.0, "drain_grace": 5.0, **changes}
    return value.replace(local_targets_dir=folder / "targets", **changes).resolved()


@contextmanager
def module_worker(settings: Settings, slots: int = 1) -> Iterator[Settings]:
    """A ``nectar worker`` with ``slots`` on ``settings`` (its log beside its data), once it says its slots; stopped
    as the block ends."""
    folder = settings.data_dir.parent
    with SQLiteRunStore(settings.registry_path) as runs:  # made before the worker opens it
        index = f"{runs.path}-shm"
    processes = Processes(folder)
    try:
        env = {**os.environ, **settings_env(settings)}
        started_worker(processes, [*NECTAR, "worker", "--workers", str(slots)], env, folder)
        # this process keeps a descriptor of the registry's WAL index once its registry closed while another process
        # (the worker) holds a lock on the index (nectar.registry.sqlite_checkpoints.release): kept from here, where
        # the first test's registry takes it as the next ones do, not new in that test (conftest's registries_closed)
        wait_until(lambda: kept_here(index), timeout=60)
        yield settings
    finally:
        processes.close(grace=STOP_TIMEOUT)


def kept_here(index: str) -> bool:
    """Whether this process keeps the descriptor of the WAL index ``index`` it opened and was done with (none before
    the worker opened the registry: the store made before it removed its index as it closed)."""
    try:
        held = os.open(index, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    sqlite_checkpoints.release(held)
    return held in sqlite_checkpoints._KEPT


def write_chain_file(settings: Settings, ref: str, source: str) -> Path:
    """``<chains>/<ref>.py``, a file no test of the module wrote before (one rewritten: conftest's ``write_chain``)."""
    path = settings.chains_dir / f"{ref}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x") as out:
        out.write(source)
    return path
