"""Scale-out for real: a PostgreSQL registry, one ``nectar scheduler``, one moto S3 server, and nodes that
each run ``nectar api`` and ``nectar worker`` with their own ports and data folders, as separate machines would.

Every task execution is written to the fault suite's ledger (:mod:`tests.helpers.ledger`), so a test
can count executions, duplicates and lost runs; the figures of each test are printed as one table.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pluggy
import pytest
import requests

from harness import NECTAR, PortTaken, Processes, base_env, descendants, free_port, freeze, send, settings_env
from nectar.config import Settings
from nectar.luigid import SECRET_ENV
from nectar.registry import RunState
from nectar.registry.postgres import PostgresRunStore
from tests.helpers.ledger import CHAIN, CHAIN_TYPE, LEDGER_CHAIN, Ledger
from tests.helpers.reports import add_row


@dataclasses.dataclass(frozen=True)
class Figures:
    test: str
    nodes: int
    runs: int
    done: int
    executions: int
    duplicates: int
    lost: int
    seconds: float


def report(row: Figures) -> None:
    """One row of the scale-out report printed after the test summary."""
    add_row(
        "scale-out report",
        (
            "| test | nodes | runs | DONE | executions | duplicates | lost | wall time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ),
        f"| {row.test} | {row.nodes} | {row.runs} | {row.done} | {row.executions} | {row.duplicates} "
        f"| {row.lost} | {row.seconds:.1f} |",
    )


@dataclasses.dataclass
class Node:
    name: str
    port: int
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Deployment:
    """The processes of one test; all of them are killed at teardown, whatever happened."""

    def __init__(self, tmp_path: Path, settings: Settings, database_url: str, s3_env: dict[str, str]) -> None:
        self.tmp = tmp_path
        self.logs = tmp_path / "logs"
        self.processes = Processes(self.logs)
        self.ledger = Ledger(tmp_path / "ledger.txt")
        self.settings = settings.replace(
            database_url=database_url,
            env=s3_env["ENV"],
            project_bucket=s3_env["PROJECT_BUCKET"],
            retries=2,
            retry_delay=0.2,
            heartbeat_interval=0.5,
            # a lease no late heartbeat of a loaded machine outlasts (3 s was: a reclaim, a second execution counted);
            # a test whose point is a lease's end sets its own
            lease_timeout=120.0,
            worker_poll_interval=0.5,  # idle workers are woken by NOTIFY, not by polling
        )
        self.s3_env = s3_env
        self.registry = PostgresRunStore(database_url)
        self.nodes: list[Node] = []
        self.secret = f"scale-{uuid.uuid4().hex}"

    def env(self, data_dir: Path) -> dict[str, str]:
        settings = self.settings.replace(data_dir=data_dir)
        # every machine's processes share the scheduler secret, as NECTAR_SCHEDULER_SECRET (their data folders differ)
        secret = {SECRET_ENV: self.secret}
        return {**base_env(), **settings_env(settings), **self.s3_env, **secret}

    def start_scheduler(self) -> None:
        """``nectar scheduler`` on a free port (another if it was taken since its pick), in the settings of every
        process started after it."""
        data = self.tmp / "scheduler"

        def launch(port: int) -> subprocess.Popen[bytes]:
            argv = [*NECTAR, "scheduler", "--scheduler-port", str(port), "--data-dir", str(data)]
            return self.processes.start("scheduler", argv, self.env(data))

        served = self.processes.serve("the scheduler", None, False, launch, "/api/worker_list")
        self.settings = self.settings.replace(scheduler_url=f"http://127.0.0.1:{served.port}")

    def start_node(self, workers: int = 2) -> Node:
        (node,) = self.start_nodes(1, workers)
        return node

    def start_nodes(self, count: int, workers: int = 2) -> list[Node]:
        """``count`` nodes started together (their imports overlap, as machines' would), each answering before this
        returns."""
        started: list[Node] = []
        launches: dict[str, Callable[[int], subprocess.Popen[bytes]]] = {}
        for _ in range(count):
            name = f"node{len(self.nodes) + len(started) + 1}"
            env, port = self.env(self.tmp / name), free_port()
            launches[name] = launch = self._api_launch(name, env)
            worker = self.processes.worker(env, workers=workers, name=f"{name}-worker")
            started.append(Node(name, port, launch(port), worker))
        ready = f"/api/chains/{CHAIN_TYPE}"
        for node in started:
            try:
                self.processes.wait_up(node.api, f"{node.url}{ready}", f"{node.name}'s API")
            except PortTaken:  # taken since its pick: started again on another free port (or more), awaited alone
                self.processes.kill(node.api)
                served = self.processes.serve(f"{node.name}'s API", None, False, launches[node.name], ready)
                node.api, node.port = served.proc, served.port
        self.nodes += started
        return started

    def _api_launch(self, name: str, env: dict[str, str]) -> Callable[[int], subprocess.Popen[bytes]]:
        """``nectar api`` of the node ``name`` on a port; not awaited. One gunicorn worker (8 threads) a node: the
        tests count executions, not API processes, and each worker more is one more app imported on 2 cores."""

        def launch(port: int) -> subprocess.Popen[bytes]:
            argv = [*NECTAR, "api", "--port", str(port), "--api-workers", "1"]
            return self.processes.start(f"{name}-api", argv, env)

        return launch

    def submit(self, node: Node, n: int, task: str = "LedgerTask", **params: Any) -> dict[str, Any]:
        url = f"{node.url}/api/chains/{CHAIN_TYPE}/{CHAIN}/{task}"
        answer = requests.post(url, params={"n": n, **params}, timeout=60)
        assert answer.status_code == 202, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    def freeze_node(self, node: Node) -> None:
        """SIGSTOP the node's worker, then what it started (stopped, it starts nothing more), then its API: it neither
        starts nor ends an execution from here, and none of its processes sees another die when it is killed."""
        for parent in (node.worker.pid, node.api.pid):
            freeze(parent)  # first: a child it forks while its others are listed is listed with them
            for pid in descendants(parent):
                freeze(pid)

    def kill_node(self, node: Node) -> None:
        """SIGKILL the node's API (its gunicorn group), its worker and the children executing its runs, each child
        before its parent: a frozen attempt (a process group of its own) whose worker died first was woken by the
        kernel (an orphaned group with a stopped member is sent SIGHUP and SIGCONT; its parent-death signal too),
        stopped gracefully and requeued its run (attempt 1 again) before its own SIGKILL came: a loaded run's
        failure, none of the victim's runs retried."""
        pids = [*reversed(descendants(node.api.pid)), node.api.pid]  # descendants() lists a parent before its children
        pids += [*reversed(descendants(node.worker.pid)), node.worker.pid]
        for pid in pids:
            self.ledger.note("kill", pid)
            send(pid, signal.SIGKILL)
        for proc in (node.api, node.worker):
            proc.wait(timeout=60)
        self.nodes.remove(node)

    def states(self) -> dict[RunState, int]:
        return self.registry.count_by_state()

    def outputs(self) -> int:
        import boto3

        pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.settings.bucket)
        return sum(1 for page in pages for item in page.get("Contents", []) if item["Key"].endswith("/out.txt"))

    def written_by(self) -> dict[str, int]:
        """Each output's task id and the pid of the execution that wrote it (the ledger chain writes both in it)."""
        import boto3

        s3 = boto3.client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.settings.bucket)
        keys = [item["Key"] for page in pages for item in page.get("Contents", []) if item["Key"].endswith("/out.txt")]
        lines = (s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read().decode().split() for key in keys)
        return {task_id: int(pid) for task_id, pid in lines}

    def close(self) -> None:
        self.processes.close()

    def dump_logs(self, tail: int = 40) -> None:
        self.processes.dump_logs(tail)


#: the scale-out tests' nodes, and the runs each test submits round-robin to them (issue 8's check: 200 runs to three
#: nodes, every one executed once; then again with a node killed half-way)
NODES, RUNS = 3, 200
#: set on a test whose call or setup failed: its deployment's logs are printed at its end
SCALE_FAILED = pytest.StashKey[bool]()


def submit_round_robin(deployment: Deployment, **params: Any) -> list[dict[str, Any]]:
    """RUNS distinct runs, the i-th to node i mod NODES, 16 at a time."""
    with ThreadPoolExecutor(16) as pool:
        nodes = deployment.nodes
        return list(pool.map(lambda n: deployment.submit(nodes[n % len(nodes)], n, **params), range(RUNS)))


def account(deployment: Deployment, test: str, started: float) -> Figures:
    """The figures of the test, recorded for the report."""
    states = deployment.states()
    executions = deployment.ledger.executions()
    figures = Figures(
        test,
        NODES,
        sum(states.values()),
        states[RunState.DONE],
        len(executions),
        len(deployment.ledger.duplicates()),
        sum(n for state, n in states.items() if state != RunState.DONE),
        time.monotonic() - started,
    )
    report(figures)
    return figures


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    settings: Settings,
    database_url: str,
    s3_env: dict[str, str],
    write_chain: Callable[[str, str], Path],
) -> Iterator[Deployment]:
    built = Deployment(tmp_path, settings, database_url, s3_env)
    write_chain(f"{CHAIN_TYPE}/{CHAIN}", LEDGER_CHAIN.replace("@LEDGER@", repr(str(built.ledger.path))))
    try:
        yield built
    finally:
        built.close()
        if request.node.stash.get(SCALE_FAILED, False):
            built.dump_logs()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    if outcome.get_result().failed:
        item.stash[SCALE_FAILED] = True
