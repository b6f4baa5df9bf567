"""PostgreSQL crashes and comes back: the API answers 503 naming the registry meanwhile, workers ride it out,
and every accepted run is DONE afterwards, its task executed once."""

from __future__ import annotations

import math
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from nectar.errors import RegistryUnavailable
from nectar.registry import RunState
from tests.conftest import free_port
from tests.faults.conftest import CHAIN, CHAIN_TYPE, waitfor
from tests.helpers.postgres import PostgresServer
from tests.scale.conftest import Deployment, Node

RUNS = 12
#: the lease of this test's attempts (seconds): the database is down for longer
LEASE = 10.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, since the test crashes it."""
    server = PostgresServer.start(free_port())
    yield server
    server.stop()


@pytest.fixture
def database_url(own_postgres: PostgresServer) -> str:
    return own_postgres.create_database()


def done(deployment: Deployment) -> int:
    try:
        return deployment.states()[RunState.DONE]
    except RegistryUnavailable:
        return -1


def failed_beats(deployment: Deployment, node: Node, run_id: str) -> int:
    """The heartbeats of the run ``run_id`` that failed, as its attempt logged them: in the live logs of its running
    step, in ``node``'s data folder (an attempt's own log lines go to its step's stderr)."""
    said = f"heartbeat of run {run_id} failed"
    live = (deployment.tmp / node.name / "live").glob("*.stderr.log")
    return sum(path.read_text(errors="replace").count(said) for path in live)


def test_a_postgresql_crash_is_ridden_out(deployment: Deployment, own_postgres: PostgresServer) -> None:
    # a lease the outage outlasts, and longer than the deployments' 3 s were: a heartbeat late by as much on a loaded
    # machine, once the database is back, would take a live attempt for lost (a second execution)
    deployment.settings = deployment.settings.replace(lease_timeout=LEASE)
    deployment.start_scheduler()
    node = deployment.start_node(workers=2)
    gate = deployment.tmp / "gate"  # created once the database is back: this run is still running then
    long = deployment.submit(node, 50, gate=str(gate))
    for n in range(RUNS - 1):
        deployment.submit(node, n, sleeps="0.5")
    waitfor(lambda: deployment.ledger.count("end") >= 3, 60, "some runs to end", interval=0.1)

    own_postgres.halt()

    refused = requests.post(f"{node.url}/api/chains/{CHAIN_TYPE}/{CHAIN}/LedgerTask", params={"n": 99}, timeout=60)
    assert refused.status_code == 503, refused.text
    assert refused.json()["message"].startswith("registry unavailable: PostgreSQL")
    assert refused.headers["Retry-After"] == "2"
    health = requests.get(f"{node.url}/healthz", timeout=60)
    assert health.status_code == 503 and health.json()["data"]["registry"]["ok"] is False
    # down longer than a lease: the running attempt's heartbeat failed for longer than that (each failed beat an
    # interval after the last: more than a lease from the first to the last counted), but it is not lost for that
    beats = math.ceil(deployment.settings.lease_timeout / deployment.settings.heartbeat_interval) + 2
    waitfor(
        lambda: failed_beats(deployment, node, long["run_id"]) >= beats, 60, f"{beats} failed heartbeats", interval=0.1
    )
    assert node.worker.poll() is None and node.api.poll() is None, "a process died with the database"

    own_postgres.resume()
    gate.touch()

    waitfor(lambda: done(deployment) == RUNS, 120, "every run accepted before the crash to be DONE", interval=0.5)
    ended = Counter(e.task_id for e in deployment.ledger.executions() if e.end is not None)
    assert len(ended) == RUNS and set(ended.values()) == {1}
    assert deployment.ledger.duplicates() == []
    held = deployment.registry.get(long["run_id"])
    assert held is not None and held.attempt == 1
    assert deployment.submit(node, 99)["job_status"] == "PENDING"  # and new submissions are taken again


def test_a_postgresql_that_cannot_start_says_why(own_postgres: PostgresServer) -> None:
    """A start that fails says what ``pg_ctl`` said and what the server logged: it said only "returned non-zero exit
    status 1" (a server slower than pg_ctl's 60 s said no more, and was left starting)."""
    own_postgres.halt()
    with (own_postgres.folder / "data" / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'lots'\n")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        own_postgres.resume()
    notes = "\n".join(getattr(failed.value, "__notes__", []))
    assert "pg_ctl said: " in notes and "could not start server" in notes, notes
    assert 'invalid value for parameter "shared_buffers": "lots"' in notes, notes
