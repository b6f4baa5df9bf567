"""Fault injection against a real Datanectar: luigid, ``nectar worker`` processes, the API under
gunicorn (or ``nectar serve`` whole) and, where S3 is involved, a moto server, each one a real
process that a test kills (SIGKILL), freezes (SIGSTOP/SIGCONT), stops (SIGTERM) or restarts.

Every task execution leaves its trace in a ledger (:mod:`tests.helpers.ledger`: ``start``, then ``end`` or
``fail``, one ``os.write`` on an ``O_APPEND`` descriptor per line), and the harness adds a ``kill`` or ``freeze``
line for each process it signals. From the ledger and the registry each test counts:

- accepted: distinct runs the API accepted (a 202's run id; a 200's key, whose output existed);
- DONE: accepted runs whose registry state is DONE and whose output exists;
- FAILED/CANCELLED as expected: accepted runs that ended FAILED or CANCELLED with a reason;
- duplicate executions: executions that reached ``end`` when another execution of the same
  luigi task had already reached it, or that overlapped in time another execution of that task
  (an execution lasts from its ``start`` to its ``end``/``fail`` line or to the moment the harness
  killed or froze its process);
- lost: accepted runs that are neither DONE nor ended with a reason when the test ends.

The figures of every test are printed as one Markdown table at the end of the session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
import requests

from harness import (
    LUIGI_CFG,
    MOTO_CREDENTIALS,
    REPO,
    TOKEN_VAR,
    Processes,
    alive,
    arguments,
    base_env,
    carrying,
    children,
    cmdline,
    descendants,
    free_port,
    freeze,
    send,
    settings_env,
    wait_until,
    waitfor,
)
from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.ledger import CHAIN, CHAIN_TYPE, LEDGER_CHAIN, Ledger
from tests.helpers.registries import closed_at_end
from tests.helpers.reports import add_row
from tests.helpers.suiteE_links import LinksOnce
from tests.links import check_links

#: what tests import from here, beside the fixture
__all__ = ["CHAIN", "CHAIN_TYPE", "Cluster", "alive", "children", "cmdline", "descendants", "links_checked", "send"]
__all__ += ["frozen_outside_turn", "tagged", "waitfor"]


def frozen_outside_turn(pid: int, registry: Path, stop: Callable[[int], None] = freeze) -> None:
    """``pid`` stopped (``stop``: SIGSTOP) at a moment it holds neither the registry's write turn (its ``-writer``
    file's lock) nor SQLite's write lock: the processes left running write on. Stopped in a turn (a service process's
    heartbeat, idle pass or checkpoint), it is continued and stopped again until it is not: stopped in its turn at
    any moment, it kept every other writer waiting ``BUSY_TIMEOUT`` (30 s) for it (a POST then answered 503, a
    reclaim raised ``TurnNotTaken``)."""
    while True:
        stop(pid)
        turn = os.open(f"{registry}-writer", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.closing(sqlite3.connect(registry, timeout=0)) as db:
                db.execute("BEGIN IMMEDIATE")
                db.rollback()
            return
        except (OSError, sqlite3.OperationalError):
            os.kill(pid, signal.SIGCONT)
        finally:
            os.close(turn)  # the kernel's lock goes with it


def tagged(token: str) -> list[int]:
    """Every live process whose environment carries ``token`` (started by one test)."""
    return carrying(TOKEN_VAR, token)


# --- the report ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tally:
    fault: str
    accepted: int
    done: int
    ended: int
    duplicates: int
    lost: int
    seconds: float
    detail: str = ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"faults_{report.when}", report)


def report(row: Tally) -> None:
    """One row of the fault injection report printed after the test summary."""
    add_row(
        "fault injection report",
        (
            "| fault | accepted | DONE | FAILED/CANCELLED as expected | duplicate executions | lost | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ),
        f"| {row.fault} | {row.accepted} | {row.done} | {row.ended} | {row.duplicates} | {row.lost} "
        f"| {row.seconds:.1f} |",
    )


# --- the HTTP client ----------------------------------------------------------------------


def links_checked(answer: requests.Response, links: LinksOnce | None = None) -> requests.Response:
    """``answer``, once every link it hands out (a status, a run, a submission answered 200) answered 200 (by
    ``links``: not fetched again where a status of the same state handed them out in the same wait)."""
    if answer.status_code == 200 and answer.headers.get("content-type", "").startswith("application/json"):
        check = check_links if links is None else links.check
        check(answer.json(), f"{answer.request.method} {answer.url}")
    return answer


class Api:
    """Submit, look up and cancel runs over HTTP; every accepted run is noted in the cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cluster.api_port}"

    def submit(self, task: str = "LedgerTask", timeout: float = 60, **params: Any) -> requests.Response:
        answer = requests.post(f"{self.url}/api/chains/{CHAIN_TYPE}/{CHAIN}/{task}", params=params, timeout=timeout)
        self.cluster.accepted_answer(answer)
        return links_checked(answer)

    def queue(self, task: str = "LedgerTask", **params: Any) -> dict[str, Any]:
        """Submit; the 202 answer's data."""
        answer = self.submit(task, **params)
        assert answer.status_code == 202, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    def status(self, key: str, timeout: float = 60, links: LinksOnce | None = None) -> requests.Response:
        """A key's status, each link it hands out fetched (by ``links``: those of a state it checked already not
        again)."""
        answer = requests.get(f"{self.url}/api/chainstatus", params={"chain": key}, timeout=timeout)
        return links_checked(answer, links)

    def state(self, key: str, links: LinksOnce | None = None) -> dict[str, Any]:
        answer = self.status(key, links=links)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    def cancel(self, run_id: str) -> requests.Response:
        return requests.post(f"{self.url}/api/runs/{run_id}/cancel", timeout=60)

    def run(self, run_id: str) -> requests.Response:
        return links_checked(requests.get(f"{self.url}/api/runs/{run_id}", timeout=60))

    def healthz(self) -> requests.Response:
        return requests.get(f"{self.url}/healthz", timeout=60)

    def wait(self, key: str, states: tuple[str, ...] = ("DONE",), timeout: float = 60) -> dict[str, Any]:
        """Poll a key's status until its job_status is one of ``states``; its data. The links of each state's
        status are fetched once (:class:`~tests.helpers.suiteE_links.LinksOnce`), not at every poll."""
        seen: list[str] = []
        links = LinksOnce()

        def reached() -> dict[str, Any] | None:
            data = self.state(key, links)
            seen.append(data["job_status"])
            return data if data["job_status"] in states else None

        try:
            result = wait_until(reached, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"{key} never reached {states} in {timeout}s; last {seen[-3:]}") from None
        return result

    def wait_all(self, keys: list[str], states: tuple[str, ...] = ("DONE",), timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        return [self.wait(key, states, max(1.0, deadline - time.monotonic())) for key in keys]


# --- the cluster --------------------------------------------------------------------------


class Cluster:
    """The processes of one test, started and stopped (or killed) at will; everything is killed at teardown."""

    def __init__(self, tmp_path: Path, settings: Settings, write_chain: Callable[[str, str], Path], token: str):
        self.tmp = tmp_path
        self.token = token
        self.luigid_port, self.api_port = free_port(), free_port()
        # a lease no late heartbeat of a loaded machine outlasts (the suite's 5 s was: a reclaim, a second attempt);
        # an attempt whose process is killed is found lost for that, and a test whose point is a lease sets its own
        self.settings = settings.replace(scheduler_url=f"http://127.0.0.1:{self.luigid_port}", lease_timeout=3600.0)
        self.ledger = Ledger(tmp_path / "ledger.txt")
        write_chain(f"{CHAIN_TYPE}/{CHAIN}", LEDGER_CHAIN.replace("@LEDGER@", repr(str(self.ledger.path))))
        self.logs = tmp_path / "logs"
        self.processes = Processes(self.logs, token)
        self.log_of = self.processes.log_of  # pid -> what it printed
        self.extra_env: dict[str, str] = {}
        self.luigid: subprocess.Popen[bytes] | None = None
        self.api_proc: subprocess.Popen[bytes] | None = None
        self.moto: subprocess.Popen[bytes] | None = None
        self.moto_port = free_port()
        self.bucket = ""
        #: when the store last started empty: outputs of runs finished before then are gone with it
        self.wiped_at = 0.0
        self.api = Api(self)
        self.fault = ""
        self.started = time.monotonic()
        self.row: Tally | None = None
        self._lock = threading.Lock()
        self.accepted: dict[str, str] = {}  # run id -> key
        self.done_keys: set[str] = set()  # 200 answers: the output existed, no run was queued
        self._registry: SQLiteRunStore | None = None

    # environment and logs

    def env(self, settings: Settings | None = None) -> dict[str, str]:
        return {**base_env(), **settings_env(settings or self.settings), **self.extra_env}

    def worker_log(self) -> str:
        """What the workers (and their attempts) logged, a process's lines in the order it did things."""
        return "".join(path.read_text() for path in sorted(self.logs.glob("worker-*.log")))

    def dump_logs(self, tail: int = 60) -> None:
        self.processes.dump_logs(tail)
        print("----- ledger")
        print(self.ledger.path.read_text())

    # luigid

    def start_luigid(self, config: Path = LUIGI_CFG) -> None:
        # on its port and no other: the settings (and so every worker's) name it, a restart comes back there
        self.luigid = self.processes.luigid(self.luigid_port, self.tmp / "luigid", config, fixed=True).proc

    def kill_luigid(self) -> None:
        assert self.luigid is not None
        self.luigid.kill()
        self.luigid.wait(timeout=60)

    # workers

    def start_worker(self, workers: int = 2, **changes: Any) -> subprocess.Popen[bytes]:
        settings = self.settings.replace(**changes) if changes else self.settings
        return self.processes.worker(self.env(settings), self.tmp, workers)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL a worker and the children executing its attempts (in their own groups) as one crash would:
        the worker is frozen first, so that neither it nor its children (which stop on their own when it dies)
        see the others die; their pids."""
        self.freeze(proc.pid)
        kids = descendants(proc.pid)
        self.kill_pids(kids)
        self.ledger.note("kill", proc.pid)
        proc.kill()
        proc.wait(timeout=60)
        return kids

    def kill_pids(self, pids: list[int]) -> None:
        for pid in pids:
            self.ledger.note("kill", pid)
            send(pid, signal.SIGKILL)
        waitfor(lambda: not any(alive(pid) for pid in pids), 60, f"{pids} to die")

    def freeze(self, pid: int) -> None:
        self.ledger.note("freeze", pid)
        freeze(pid)

    def freeze_idle(self, pid: int) -> None:
        """:meth:`freeze` ``pid``, a process of the service, at a moment it holds no turn at the registry
        (:func:`frozen_outside_turn`): for a test that writes, or has the service write, while it is stopped."""
        frozen_outside_turn(pid, self.settings.registry_path, self.freeze)

    # the API

    def start_api(self, **changes: Any) -> None:
        settings = self.settings.replace(**changes) if changes else self.settings
        # on a port of the harness's choice (another if this one was taken since its pick): clients read api_port
        served = self.processes.api(None, self.env(settings), ready=f"/api/chains/{CHAIN_TYPE}")
        self.api_proc, self.api_port = served.proc, served.port

    def stop_api(self) -> None:
        """SIGTERM the API and wait for it to exit."""
        assert self.api_proc is not None
        self.api_proc.terminate()
        self.api_proc.wait(timeout=60)

    def kill_api(self) -> list[int]:
        """SIGKILL the gunicorn master and its workers (one process group); their pids."""
        assert self.api_proc is not None
        return self.processes.kill(self.api_proc)

    # the whole service

    def start_service(self, workers: int = 2, **changes: Any) -> subprocess.Popen[bytes]:
        """luigid, the API, and one worker of ``workers`` slots (with ``changes`` to its settings); the worker."""
        self.start_luigid()
        self.start_api()
        return self.start_worker(workers, **changes)

    def start_runs(self, count: int, **params: Any) -> list[dict[str, Any]]:
        """Queue ``count`` runs of the ledger's task (``n`` 0, 1, ..., each with ``params``) and wait until each has
        started (none started before); the API's answers."""
        runs = [self.api.queue(n=n, **params) for n in range(count)]
        waitfor(lambda: self.ledger.count("start") == count, 60, f"{count} run(s) to start")
        return runs

    def start_serve(self, workers: int = 4, **env: str) -> subprocess.Popen[bytes]:
        """``nectar serve`` on this cluster's data and chains folders; answers before this returns. On ports of the
        harness's choice (others if one was taken since its pick): clients read ``api_port`` and ``luigid_port``."""
        project = self.tmp / "project"
        project.mkdir(exist_ok=True)
        args = ["--data-dir", str(self.settings.data_dir), "--chains-dir", str(self.settings.chains_dir)]
        args += ["--workers", str(workers)]
        env = {
            **base_env(),
            "ENV": "local",
            "NECTAR_LOCAL_TARGETS": str(self.settings.local_targets_dir),
            "NECTAR_LUIGI_CONFIG": str(REPO / "configuration" / "luigi.cfg"),
            **env,
        }
        served = self.processes.nectar_serve(env, project, args, ready=f"/api/chains/{CHAIN_TYPE}")
        assert served.scheduler_port is not None
        self.api_port, self.luigid_port = served.port, served.scheduler_port
        self.settings = self.settings.replace(scheduler_url=f"http://127.0.0.1:{self.luigid_port}")
        return served.proc

    @staticmethod
    def serve_parts(proc: subprocess.Popen[bytes]) -> dict[str, int]:
        """The pids of luigid, the workers and the API that ``nectar serve`` started."""
        parts: dict[str, int] = {}
        for pid in children(proc.pid):
            line = arguments(pid)
            name = "luigid" if "luigid" in line else "workers" if "worker" in line else "api"
            parts[name] = pid
        assert set(parts) == {"luigid", "workers", "api"}, {pid: cmdline(pid) for pid in children(proc.pid)}
        return parts

    # S3 (moto)

    def use_s3(self) -> None:
        """Targets in a bucket of this cluster's own moto server (started here); call before anything else."""
        self.bucket = f"nectar-{uuid.uuid4().hex[:12]}"
        self.extra_env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}", **MOTO_CREDENTIALS}
        self.settings = self.settings.replace(env="test", project_bucket=self.bucket)
        self.start_moto()

    @property
    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.extra_env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def start_moto(self) -> None:
        """Start moto on this cluster's port and create the bucket (moto forgets everything when it stops)."""
        self.moto = self.processes.moto(self.moto_port, fixed=True).proc  # the environment names it
        self.s3.create_bucket(Bucket=self.settings.bucket)
        self.wiped_at = time.time()

    def stop_moto(self) -> None:
        assert self.moto is not None
        self.moto.kill()
        self.moto.wait(timeout=60)

    # the registry, the store and the figures

    @property
    def registry(self) -> SQLiteRunStore:
        if self._registry is None:
            self._registry = closed_at_end(SQLiteRunStore(self.settings.registry_path))
        return self._registry

    def run(self, run_id: str) -> Run:
        run = self.registry.get(run_id)
        assert run is not None, run_id
        return run

    def exists(self, key: str) -> bool:
        if self.settings.store_kind == "local":
            return (self.settings.local_targets_dir / key).is_file()
        try:
            self.s3.head_object(Bucket=self.settings.bucket, Key=key)
        except Exception:  # absent, or moto down: either way not there to be read
            return False
        return True

    def read(self, key: str) -> str:
        if self.settings.store_kind == "local":
            return (self.settings.local_targets_dir / key).read_text()
        return str(self.s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read().decode())

    def wiped(self, run: Run) -> bool:
        """Whether a DONE run's output went with a store that was restarted empty (moto) after it finished."""
        return self.settings.store_kind == "s3" and (run.finished_at or 0) < self.wiped_at

    def accepted_answer(self, answer: requests.Response) -> None:
        if answer.status_code not in (200, 202):
            return
        data = answer.json()["data"]
        with self._lock:
            if answer.status_code == 202:
                self.accepted[data["run_id"]] = data["key"]
            else:
                self.done_keys.add(data["key"])

    def tally(self) -> Tally:
        done = ended = lost = 0
        notes = []
        for run_id, key in sorted(self.accepted.items()):
            run = self.registry.get(run_id)
            if run is not None and run.state == RunState.DONE and (self.exists(key) or self.wiped(run)):
                done += 1
            elif run is not None and run.state in (RunState.FAILED, RunState.CANCELLED) and run.error:
                ended += 1
            else:
                lost += 1
                notes.append(f"lost {run_id}: {run}")
        for key in sorted(self.done_keys - set(self.accepted.values())):
            if self.exists(key):
                done += 1
            else:
                lost += 1
                notes.append(f"lost {key}: its output is gone")
        duplicates = self.ledger.duplicates()
        notes += [f"duplicate {e}" for e in duplicates]
        return Tally(
            self.fault,
            len(self.accepted) + len(self.done_keys - set(self.accepted.values())),
            done,
            ended,
            len(duplicates),
            lost,
            time.monotonic() - self.started,
            "\n".join(notes),
        )

    def account(self, ended: int = 0, duplicates: int = 0, lost: int = 0) -> Tally:
        """The test's figures, recorded for the report; every accepted run not expected to end otherwise is DONE."""
        tally = self.tally()
        self.row = tally
        got = (tally.done, tally.ended, tally.duplicates, tally.lost)
        assert got == (tally.accepted - ended, ended, duplicates, lost), f"{tally}\n{tally.detail}"
        return tally

    # teardown

    def close(self) -> None:
        self.processes.close()


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    settings: Settings,
    write_chain: Callable[[str, str], Path],
) -> Iterator[Cluster]:
    """A cluster of real processes for one test; all of them are killed when it ends, whatever happened."""
    built = Cluster(tmp_path, settings, write_chain, uuid.uuid4().hex)
    built.fault = request.node.name
    try:
        yield built
    finally:
        failed = any(
            getattr(getattr(request.node, f"faults_{when}", None), "failed", False) for when in ("setup", "call")
        )
        built.close()
        try:
            row = built.row or built.tally()
        except Exception as exc:  # a tally of a broken test must not hide why it broke
            row = Tally(built.fault, 0, 0, 0, 0, 0, time.monotonic() - built.started, repr(exc))
        if failed:
            row = dataclasses.replace(row, fault=f"{row.fault} (TEST FAILED)")
            built.dump_logs()
            print(row.detail)
        report(row)
