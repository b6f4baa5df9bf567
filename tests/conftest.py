"""The test world: a real luigid and a real moto S3 server on free ports, temporary chains,
data and target folders, and real ``nectar worker`` processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings as hypothesis_settings

from harness import LUIGI_CFG, NECTAR, REPO, STOP_TIMEOUT, Processes, free_port, settings_env, stop, wait_until
from nectar.config import Settings, configure
from tests import links
from tests.helpers import bytecode, registries, reports
from tests.helpers.postgres import PostgresServer

# Hypothesis's default 200 ms deadline per example is a time bound: on a loaded machine an example that is merely
# slow fails the test (seen: test_a_lean_prune_... at 298 ms). Tests here bound no time; a hang has its own guard.
hypothesis_settings.register_profile("nectar", deadline=None)
hypothesis_settings.load_profile("nectar")

if TYPE_CHECKING:
    from nectar.registry import Run, RunStore

#: Chromium under Playwright, one for the session, for the UI and security tests; mypy started with the session
pytest_plugins = ["tests.helpers.browser", "tests.helpers.background_mypy"]

#: what tests import from here, beside the fixtures (the process helpers are :mod:`harness`'s)
__all__ = ["LUIGI_CFG", "NECTAR", "REPO", "SALES_DAY_PARAM", "free_port", "settings_env", "start_luigid", "stop"]
__all__ += ["wait_until"]


#: how the catalog describes the ``day`` parameter of chains/etl/sales_chain.py's tasks
SALES_DAY_PARAM = {
    "name": "day",
    "kind": "date",
    "required": True,
    "default": None,
    "description": "The sales day (YYYY-MM-DD).",
    "significant": True,
    "choices": None,
    "private": False,
}


#: the longest files, longest first (~110 to ~20 s each on a loaded 2-core machine), run before all others. xdist's
#: --dist loadfile hands out whole files in collection order (with --no-loadscope-reorder; by default it sorts them
#: by their number of tests, which sent these few-test, long files last): so every worker starts on long files and
#: short ones fill the end, instead of workers idling while one runs a 70 s file it took last. Not
#: tests/test_lint.py: its mypy runs from the session's start (tests/helpers/background_mypy.py), and is read late
SLOWEST_FIRST = (
    "tests/schedules/test_clock_stops.py",
    "tests/triggers/test_exactly_once.py",
    "tests/faults/test_submissions.py",
    "tests/nectar/test_executor.py",
    "tests/security/test_fuzz.py",
    "tests/security/test_fuzz_scheduling.py",
    "tests/test_benchmarks.py",
    "tests/nectar/test_cli.py",
    "tests/nectar/test_serve.py",
    "tests/nectar/test_spare.py",
    "tests/nectar/test_sqlite_checkpoints.py",
    "tests/schedules/test_clock_races.py",
    "tests/nectar/test_client.py",
    "tests/api/test_plain_tasks.py",
    "tests/harness/test_ports.py",
    "tests/nectar/test_answering_threads.py",
    "tests/schedules/test_policies.py",
    "tests/nectar/test_kept_modules.py",
    "tests/nectar/test_review11_kept.py",
    "tests/scale/test_node_killed.py",
    "tests/faults/test_dependencies.py",
    "tests/faults/test_serve_stops.py",
    "tests/faults/test_worker_dies.py",
    "tests/schedules/test_exactly_once.py",
    "tests/faults/test_policies.py",
    "tests/scale/test_nodes.py",
    "tests/faults/test_frozen_attempts.py",
    "tests/triggers/test_exactly_once_local.py",
    "tests/triggers/test_listing.py",
    "tests/scale/test_registry_restart.py",
    "tests/faults/test_processes.py",
    "tests/triggers/test_waiting.py",
    "tests/scale/test_pools.py",
    "tests/scale/test_live_logs.py",
    "tests/nectar/test_review19_cli_dynamic.py",
    "tests/nectar/test_review19_sibling_import.py",
    "tests/nectar/test_review19_helper_module.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of :data:`SLOWEST_FIRST` first, in its order; every other test keeps its place."""
    gone = [path for path in SLOWEST_FIRST if not (REPO / path).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py's SLOWEST_FIRST names files that no longer exist: {gone}")
    rank = {path: n for n, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


#: prometheus_client's choice of multiprocess values is made as it is first imported, from this variable, which
#: nectar.gunicorn_conf sets as it is imported: a test module importing it made every later test of its pytest worker
#: read no latency from /metrics (4 tests failed that way in a clean-clone CI run)
MULTIPROC_AT_START = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def pytest_collection(session: pytest.Session) -> None:
    bytecode.collection_started()  # pytest writes its rewritten test modules' bytecode (tests/helpers/bytecode.py)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A test module is collected (imported, its asserts rewritten) by one process at a time: the xdist workers of a
    clean clone rewrite each once between them, not once each (tests/helpers/bytecode.py)."""
    if not isinstance(collector, pytest.Module):
        return (yield)
    with bytecode.one_rewrite(collector.path):
        return (yield)


def pytest_collection_finish(session: pytest.Session) -> None:
    """No test module sets ``PROMETHEUS_MULTIPROC_DIR`` in pytest's own process as it is collected."""
    bytecode.collection_finished()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != MULTIPROC_AT_START:
        raise pytest.UsageError(
            "a test module set PROMETHEUS_MULTIPROC_DIR as it was collected (an import of nectar.gunicorn_conf): "
            "import that file in a subprocess, as tests/nectar/test_gunicorn_conf.py does"
        )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the session's own process, before it starts the xdist workers
        bytecode.compile_ahead(REPO)
    config.addinivalue_line(
        "markers", "links_may_fail(reason): the links its statuses hand out are not fetched (tests/links.py), and why"
    )
    config.addinivalue_line(
        "markers",
        "registry_left_open(reason): the test leaves a registry open on purpose (a test of close itself, a kill -9 "
        "in this process), and why: registries_closed does not fail it (its registries are closed all the same)",
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # a pytest-xdist worker: its tables go to the controller, which prints them
        output["nectar_reports"] = reports.dump()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    reports.merge(getattr(node, "workeroutput", {}).get("nectar_reports"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports.write(terminalreporter)


@pytest.fixture(autouse=True)
def registries_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every SQLite registry the test made is closed at its end (the first fixture set up, the last torn down: after
    the test's fixtures that hold one); then the test fails if this process holds a descriptor of a registry file it
    did not hold before (a connection, a WAL index or a turn left open: an xdist worker held ~940 by the end of
    ``tests/nectar``, and one past 1,024 failed a ``select()``). It fails too, named with their paths, if it left one
    of its own unclosed for this fixture to close (so what the service forgets to close shows: an app, an executor, a
    CLI command), unless marked ``registry_left_open``; they are closed all the same, so the next test starts clean.
    A test closes what it opens: a ``with``, or :func:`~tests.helpers.registries.closed_at_end`."""
    registries.forget_opened()  # those made before it (a session's fixtures) are not the test's
    before = registries.descriptors()
    strict = request.node.get_closest_marker("registry_left_open") is None
    yield
    try:
        registries.close_owned()  # what the test said it owns (registries.closed_at_end): closed as it asked
    finally:  # and if a close failed, the rest still: the next test starts with none of them
        unclosed = registries.left_unclosed() if strict else []
        registries.close_opened()
    if unclosed:
        paths = ", ".join(sorted({str(store.path) for store in unclosed}))
        pytest.fail(f"{request.node.nodeid} left {len(unclosed)} registries unclosed: {paths}", pytrace=False)
    # the values of its fixtures, torn down before this one, go (pytest drops them after the last teardown): a store
    # among them frees what its close keeps for a later use (a thread's connection)
    request.node.funcargs.clear()
    left = registries.left_open(before)
    if left:
        pytest.fail(f"the test left {len(left)} descriptors of registry files open: {left}", pytrace=False)


@pytest.fixture(autouse=True)
def chain_classes_forgotten() -> Iterator[None]:
    """luigi forgets, at the test's end, the task classes of the chain modules (``chains.<type>.<chain>``) the test
    executed, as a process of its own would never have had them: luigi keeps every class it was ever given, and a
    test's chain, from its own temporary folder, made a short name ambiguous for every later test of its process (an
    xdist worker): test_visualiser's two ``TwinTask`` and then test_task's lookup of ``TwinTask``. Nothing is imported
    here: a process that never imported ``nectar.luigi_internals`` executed no chain through it."""
    internals = sys.modules.get("nectar.luigi_internals")
    before = set(internals.task_classes()) if internals is not None else set()
    yield
    internals = sys.modules.get("nectar.luigi_internals")
    if internals is None:
        return
    added = {cls.__module__ for cls in internals.task_classes() if cls not in before}
    for module in sorted(module for module in added if module.startswith("chains.")):
        internals.forget_task_classes(module)


@pytest.fixture(autouse=True)
def links_checked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every link a status hands out is fetched when the status arrives, unless the test is marked links_may_fail."""
    marker = request.node.get_closest_marker("links_may_fail")
    links.exempt = str(marker.args[0]) if marker else None
    yield
    links.exempt = None


def start_luigid(port: int, state: Path, config: Path = LUIGI_CFG) -> subprocess.Popen[bytes]:
    """A real luigid with ``config`` (the project's luigi.cfg), its state in ``state``, on ``port`` and no other (its
    tests restart it there; :class:`harness.PortTaken` if another process has it); answers before this returns.

    Not moved to another port when this one was taken (:func:`harness.on_a_free_port`): its callers restart luigid on
    the same port (test_scheduler, test_reuse: a scheduler coming back, its state kept or lost), which their clients
    name. A luigid started once, anywhere, is :meth:`harness.Processes.luigid` with ``port=None`` (its port read from
    what it returns)."""
    return Processes(state / "logs").luigid(port, state, config, fixed=True).proc


@pytest.fixture(scope="session")
def session_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """The processes the whole session shares (luigid, moto), all killed at its end: nothing reads their state
    then, and a graceful stop (luigid saving its state) was the last ~10 s of a loaded worker."""
    processes = Processes(tmp_path_factory.mktemp("processes"))
    yield processes
    processes.close()


@pytest.fixture(scope="session")
def luigid(session_processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real luigi central scheduler; its URL."""
    return f"http://127.0.0.1:{session_processes.luigid(None, tmp_path_factory.mktemp('luigid')).port}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (Debian's package, installed if missing) on a free port."""
    server = PostgresServer.start(free_port())
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database of its own (dropped once the test ended and nothing is connected
    to it: :meth:`PostgresServer.finished`)."""
    url = postgres.create_database()
    yield url
    postgres.finished(url)


@pytest.fixture(scope="session")
def moto_server(session_processes: Processes) -> str:
    """A real moto S3 server over HTTP; its endpoint URL."""
    return f"http://127.0.0.1:{session_processes.moto().port}"


@pytest.fixture
def chains_dir(tmp_path: Path) -> Path:
    """A copy of the repository's example chains in a temporary folder."""
    target = tmp_path / "chains"
    shutil.copytree(REPO / "chains", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def write_chain(chains_dir: Path) -> Callable[[str, str], Path]:
    """Write (or rewrite) ``<chains>/<ref>.py``; bumps the mtime so a change is always seen."""

    def write(ref: str, source: str) -> Path:
        path = chains_dir / f"{ref}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(source)
        stamp = max(time.time_ns(), old + 1_000_000)
        os.utime(path, ns=(stamp, stamp))
        return path

    return write


@pytest.fixture
def settings(tmp_path: Path, chains_dir: Path) -> Iterator[Settings]:
    """Local-store settings in temporary folders, configured for this process."""
    value = Settings(
        env="local",
        chains_dir=chains_dir,
        data_dir=tmp_path / "data",
        local_targets_dir=tmp_path / "targets",
        # the test's folders are the landing areas triggers and batches made over HTTP may list
        landing_roots=str(tmp_path),
        # a failure is final unless a test asks for retries
        retries=0,
        retry_delay=0.2,
        heartbeat_interval=0.5,
        # a lease no late heartbeat outlasts, whatever the load (CI's 2 cores, a load of 15 and more): with 5 s, an
        # attempt whose heartbeat thread was not scheduled for 5 s was reclaimed by its worker's next pass, and its run
        # (no retries) FAILED, or ran twice; a process that died is reclaimed at once all the same (its pid is gone),
        # and a test whose point is a reclaim by silence gives a lease of its own
        lease_timeout=600.0,
        drain_grace=5.0,
    ).resolved()
    configure(value)
    yield value
    configure(None)


@pytest.fixture
def claimed(settings: Settings) -> Iterator[tuple[RunStore, Run]]:
    """A real registry with one run claimed by this process, closed at the test's end."""
    from nectar.leases import process_name
    from nectar.service import Nectar

    with Nectar(settings) as nectar:
        nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {})
        run = nectar.runs.claim(process_name())
        assert run is not None
        yield nectar.runs, run


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """AWS variables pointing boto3 at the moto server, with a fresh bucket created."""
    import boto3

    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ENV": "test",
        "PROJECT_BUCKET": f"nectar-{uuid.uuid4().hex[:12]}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket=f"{env['ENV']}.{env['PROJECT_BUCKET']}")
    return env


@pytest.fixture
def s3_settings(settings: Settings, s3_env: dict[str, str]) -> Settings:
    value = settings.replace(env=s3_env["ENV"], project_bucket=s3_env["PROJECT_BUCKET"])
    configure(value)
    return value


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """A test's own processes, logged in ``<tmp_path>/logs``; stopped at teardown (SIGTERM, then SIGKILL)."""
    started = Processes(tmp_path / "logs")
    yield started
    started.close(grace=STOP_TIMEOUT)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``nectar worker`` processes for some settings, each logging to ``<tmp_path>/worker-<n>.log`` (what
    the tests read); all are stopped at teardown."""
    started = Processes(tmp_path)

    def start(settings: Settings, workers: int = 2) -> subprocess.Popen[bytes]:
        return started.worker({**os.environ, **settings_env(settings)}, tmp_path, workers)

    yield start
    started.close(grace=STOP_TIMEOUT)
