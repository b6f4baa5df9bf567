"""A preloaded API imports its chains once, in gunicorn's master: its workers, a recycled one too, fork with them."""

from __future__ import annotations

import http.client
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from harness import APP, REPO, Processes, base_env, children, settings_env, waitfor
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry.sqlite import SQLiteRunStore
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_worker import module_settings

#: a chain that notes the pid of each process that imports it
NOTING_CHAIN = """
import os

import luigi

from nectar import NectarTask

with open(os.environ["PREFORK_LEDGER"], "a") as ledger:  # the master's probe child writes nowhere: named so
    ledger.write("probe\\n" if os.readlink("/proc/self/fd/1") == os.devnull else f"{os.getpid()}\\n")


class NotedTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("noted\\n")
"""
#: a chain whose import registers an exit handler noting the pid of each process that runs it
EXIT_NOTING_CHAIN = """
import atexit
import os

from nectar import NectarTask

ledger = os.environ["EXIT_LEDGER"]
atexit.register(lambda: open(ledger, "a").write(f"{os.getpid()}\\n"))


class ExitNotedTask(NectarTask):
    pass
"""
#: the service's gunicorn configuration, noting what the master has as it forks (its modules, links' URL bases, the
#: stores made) and what each worker has after each request it answered (one JSON object a file, named for the process)
MODULES_NOTING_CONF = """
import gc
import json
import os
import sys
import threading
import time

from nectar import gunicorn_conf as service
from nectar.gunicorn_conf import *  # noqa: F403

#: the collections the garbage collector had made, per generation, once the service's configuration was read
CONF_COLLECTIONS = [generation["collections"] for generation in gc.get_stats()]


def note(name, query="", **more):
    from api import links
    from nectar import stores

    # a worker's two threads may note at once, in either order: each note a file of its own, written aside
    path = os.path.join(os.environ["MODULES_LEDGER"], f"{name}.{threading.get_ident()}.{time.monotonic_ns()}")
    state = {"bases": sorted(map(list, links._BASES)), "stores": stores._store.cache_info().currsize}
    state |= {"gc_enabled": gc.isenabled(), **more}
    with open(path + ".new", "w") as ledger:
        json.dump({"query": query, "modules": sorted(sys.modules), **state}, ledger)
    os.replace(path + ".new", path)


def pre_fork(server, worker):
    loading = {"collections": [generation["collections"] for generation in gc.get_stats()], "enabled": gc.isenabled()}
    service.pre_fork(server, worker)
    email = sys.modules["marshmallow.validate"].Email.DOMAIN_REGEX  # a DeferredPattern, or the compiled pattern
    more = {"email_pattern_compiled": getattr(email, "compiled", True)}
    note("master", gc_at_conf=CONF_COLLECTIONS, gc_loading=loading, frozen=gc.get_freeze_count(), **more)


def post_request(worker, req, environ, resp):
    note(str(os.getpid()), environ.get("QUERY_STRING", ""))
"""
#: requests after which gunicorn replaces a worker (give or take its 10 % jitter)
MAX_REQUESTS = 20


def chains_of(port: int, path: str = "/api/chains/prefork") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def recycle_once(api: subprocess.Popen[bytes], port: int, path: str = "/api/chains/prefork") -> list[int]:
    """Sends ``GET path`` (each answered 200) until a worker of ``api`` is replaced; the workers it had first."""
    first = children(api.pid)
    for _ in range(3 * MAX_REQUESTS):  # a worker is replaced at least once on the way
        assert chains_of(port, path) == 200
    waitfor(lambda: set(children(api.pid)) - set(first), 60, "a recycled API worker")
    return first


def test_the_chains_are_imported_in_the_master_and_no_worker_imports_them_again(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    ledger = tmp_path / "imports.txt"
    ledger.touch()
    write_chain("prefork/noting_chain", NOTING_CHAIN)
    env = base_env() | settings_env(settings) | {"PREFORK_LEDGER": str(ledger)}
    env |= {"NECTAR_API_MAX_REQUESTS": str(MAX_REQUESTS), "NECTAR_API_THREADS": "1"}
    processes = Processes(tmp_path / "logs")
    try:
        served = processes.api(None, env, workers=1)
        api, port = served.proc, served.port
        first = recycle_once(api, port)
        assert chains_of(port) == 200  # the recycled worker answers about the chain

        importers = ledger.read_text().split()
        # the master executes it once a probe child of its own executed it to its end (ChainCatalog.refresh_ahead)
        expected = ["probe", str(api.pid)]
        assert importers == expected, f"imported by {importers}: the master is {api.pid}, workers {first}"
    finally:
        processes.close()


def test_no_api_worker_writes_the_registry_to_check_its_schema_a_recycled_one_neither(
    settings: Settings, tmp_path: Path
) -> None:
    """The master checks the SQLite registry's schema once before it forks; a worker only reads it (a status lookup
    is a read): no write transaction of a worker's, its first requests' and a recycled worker's included."""
    closed_at_end(SQLiteRunStore(settings.registry_path))  # the registry as an earlier start left it
    env = base_env() | settings_env(settings) | {"NECTAR_API_MAX_REQUESTS": str(MAX_REQUESTS)}
    env |= {"NECTAR_API_THREADS": "2"}
    processes = Processes(tmp_path / "logs")
    watcher = sqlite3.connect(settings.registry_path)
    try:
        served = processes.api(None, env, workers=1)
        api, port = served.proc, served.port
        version = watcher.execute("PRAGMA data_version").fetchone()[0]  # moves with any other connection's commit
        recycle_once(api, port, "/api/runs")
        assert chains_of(port, "/api/runs") == 200
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version, "an API worker wrote the registry"
    finally:
        watcher.close()
        processes.close()


def test_a_worker_that_ends_skips_pythons_teardown_and_its_requests_are_all_answered(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A recycled worker, and one stopped with its master, leaves without Python's teardown (which released every
    object it shares with the master, copying their pages): an exit handler inherited from the master runs in the
    master alone. Every request is answered, and gunicorn sees each worker end with status 0."""
    ledger = tmp_path / "exits.txt"
    ledger.touch()
    write_chain("prefork/exit_noting_chain", EXIT_NOTING_CHAIN)
    env = base_env() | settings_env(settings) | {"EXIT_LEDGER": str(ledger)}
    env |= {"NECTAR_API_MAX_REQUESTS": str(MAX_REQUESTS), "NECTAR_API_THREADS": "2", "NECTAR_LOG_LEVEL": "info"}
    processes = Processes(tmp_path / "logs")
    try:
        served = processes.api(None, env, workers=2)
        api, port = served.proc, served.port
        recycle_once(api, port)
        processes.stop(api)  # its workers end with it
        assert api.returncode == 0
        assert ledger.read_text().split() == [str(api.pid)], f"exit handlers ran in {ledger.read_text().split()}"
        log = "\n".join(path.read_text() for path in (tmp_path / "logs").glob("*"))
        assert log.count("Worker exiting") >= 3 and "exited with code" not in log, log
    finally:
        processes.close()


def test_a_worker_answers_with_the_modules_its_master_imported_before_forking_it(
    settings: Settings, tmp_path: Path
) -> None:
    """Every module an API worker uses to answer (gunicorn's thread pool, werkzeug's IDNA codec for the request's
    host, the app's) was imported by the master before it forked the worker: none is imported again in each worker,
    a recycled one too, on its first requests."""
    processes = Processes(tmp_path / "logs")
    try:
        api, port, ledger = noting_api(processes, settings, tmp_path, threads=2)
        for path in ("/api/chains", "/api/runs", "/api/chainstatus?chain=chains/x/y_chain/T/0/out.txt", "/healthz?end"):
            chains_of(port, path)
        (worker,) = children(api.pid)
        waitfor(lambda: any(note["query"] == "end" for note in notes(ledger, worker)), 60, "the last request noted")
        master = set().union(*(note["modules"] for note in notes(ledger, "master")))
        imported = set().union(*(note["modules"] for note in notes(ledger, worker))) - master
        assert not imported, f"imported by the worker {worker} after its fork: {sorted(imported)}"
    finally:
        processes.close()


class Noting(NamedTuple):
    """The module's noting API of one worker of one thread: its master, port, folder of notes, and the key of the run
    queued before it started."""

    api: subprocess.Popen[bytes]
    port: int
    ledger: Path
    key: TargetKey


@pytest.fixture(scope="module")
def noting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noting]:
    """One noting API (:func:`noting_api`, one thread) for the tests that each send a request of their own and read
    the notes of that request and of the master's fork, which no request changes: a run queued in its registry before
    it starts (an API's start costs ~0.8 s of CPU, CONTRIBUTING "(round 70, suiteC)")."""
    folder = tmp_path_factory.mktemp("noting")
    shutil.copytree(REPO / "chains", folder / "chains", ignore=shutil.ignore_patterns("__pycache__"))
    settings = module_settings(folder)
    with Nectar(settings) as nectar:
        key = nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {}).key
    processes = Processes(folder / "logs")
    try:
        api, port, ledger = noting_api(processes, settings, folder, threads=1)
        yield Noting(api, port, ledger, key)
    finally:
        processes.close()


def test_a_worker_answers_a_status_lookup_with_the_link_bases_and_stores_its_master_made(noting: Noting) -> None:
    """A queued run's status links to the run (a URL base per endpoint and Host: api/warm.py) and reads its task's
    store: both were made by the master before it forked the worker, none by the worker on its first lookup. The
    module's noting API (:func:`noting`), its run queued before it started."""
    assert chains_of(noting.port, f"/api/chainstatus?chain={noting.key.path}") == 200
    (worker,) = children(noting.api.pid)
    found = waitfor(lambda: [n for n in notes(noting.ledger, worker) if n["query"].startswith("chain=")], 60, "a note")
    (master,) = notes(noting.ledger, "master")
    assert found[0]["bases"], "the lookup built no link"
    made = [base for base in found[0]["bases"] if base not in master["bases"]]
    assert not made, f"URL bases the worker built itself: {made} (its master's: {master['bases']})"
    assert found[0]["stores"] == master["stores"], "the worker made a store its master had not"


def test_no_collection_runs_while_the_master_loads_the_app_and_it_and_its_workers_collect_after_the_fork(
    noting: Noting,
) -> None:
    """gunicorn's master imports and makes the app with the garbage collector off (each collection walked every object
    made so far, ~10 % of its start) and turns it on once its first fork froze them: the master and its workers
    collect from then on, sharing the frozen objects' pages. marshmallow's e-mail pattern, which the API never
    matches, is not compiled by then (nectar.deferred_imports' lazy patterns). The module's noting API
    (:func:`noting`)."""
    assert chains_of(noting.port, "/api/chains?end") == 200
    (worker,) = children(noting.api.pid)
    found = waitfor(lambda: [n for n in notes(noting.ledger, worker) if n["query"] == "end"], 60, "the request noted")
    (master,) = notes(noting.ledger, "master")
    loading = master["gc_loading"]
    assert not loading["enabled"], "the collector was on while the master loaded the app"
    assert loading["collections"] == master["gc_at_conf"], "a collection ran while the master loaded the app"
    assert master["gc_enabled"] and master["frozen"] > 0, "the master did not freeze its objects and collect again"
    assert found[0]["gc_enabled"], "the worker's collector is off"
    assert not master["email_pattern_compiled"], "the master compiled marshmallow's e-mail pattern (~50 ms)"


def noting_api(
    processes: Processes, settings: Settings, tmp_path: Path, threads: int
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """An API of one worker of ``threads`` under :data:`MODULES_NOTING_CONF`, answering: its master, its port and the
    folder of its notes."""
    conf, ledger = tmp_path / "noting_conf.py", tmp_path / "notes"
    conf.write_text(MODULES_NOTING_CONF)
    ledger.mkdir()
    env = base_env() | settings_env(settings) | {"MODULES_LEDGER": str(ledger), "NECTAR_API_THREADS": str(threads)}
    env |= {"NECTAR_HOST": "127.0.0.1", "NECTAR_API_WORKERS": "1"}

    def launch(port: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), APP]
        return processes.start("api", argv, env | {"NECTAR_PORT": str(port)}, REPO)

    served = processes.serve("the API", None, False, launch, "/healthz")  # another port if its pick was taken
    return served.proc, served.port, ledger


def notes(ledger: Path, process: object) -> list[dict[str, Any]]:
    """What ``process`` (a worker's pid, or "master") noted (:data:`MODULES_NOTING_CONF`)."""
    return [json.loads(path.read_text()) for path in ledger.glob(f"{process}.*") if path.suffix != ".new"]
