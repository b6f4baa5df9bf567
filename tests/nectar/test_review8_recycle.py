"""review8 (round 54): what gunicorn's master holds as it forks an API worker, a recycled one's successor too: nothing
of the registry's (SQLite's file, its WAL, its shared memory) and no thread of its own, so that no worker shares a
connection, descriptor, lock or thread with the master or its siblings, however much the master
warms before it forks."""

from __future__ import annotations

import os
from pathlib import Path

from harness import Processes, base_env, children, settings_env
from nectar.config import Settings
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end, descriptors
from tests.nectar.test_gunicorn_prefork import MAX_REQUESTS, chains_of, recycle_once


def test_the_master_holds_nothing_of_the_registry_and_no_thread_as_it_forks_a_recycled_worker_s_successor(
    settings: Settings, tmp_path: Path
) -> None:
    """After its workers answered lookups (each opening its own connections to the SQLite registry) and one was
    recycled (the master's ``pre_fork`` ran again, after serving): the master holds no descriptor of the registry's
    file, WAL or shared memory (its turn at writing, ``<file>-writer``, aside: a lock file no worker closes, see
    ``gunicorn_conf._open_registry``) and runs one thread. A descriptor held there is every worker's too, the same
    open file (SQLite's locks on it are the process's, its caches the master's); a thread would not cross the fork."""
    closed_at_end(SQLiteRunStore(settings.registry_path))  # the registry as an earlier start left it
    env = base_env() | settings_env(settings) | {"NECTAR_API_MAX_REQUESTS": str(MAX_REQUESTS)}
    env |= {"NECTAR_API_THREADS": "2"}
    processes = Processes(tmp_path / "logs")
    try:
        served = processes.api(None, env, workers=2)
        api, port = served.proc, served.port
        recycle_once(api, port, "/api/runs")
        assert chains_of(port, "/api/runs") == 200
        registry = str(settings.registry_path)
        held = [name for name in descriptors(api.pid).values() if name.startswith(registry)]
        held = [name for name in held if name != f"{registry}-writer"]
        assert held == [], f"gunicorn's master ({api.pid}) holds {held}: its workers {children(api.pid)} share them"
        assert os.listdir(f"/proc/{api.pid}/task") == [str(api.pid)], "gunicorn's master runs threads besides its own"
    finally:
        processes.close()
