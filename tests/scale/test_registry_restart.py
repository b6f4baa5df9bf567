"""PostgreSQL crashes and comes back: the API answers 503 naming the registry meanwhile, workers ride it out,
and every accepted run is DONE afterwards, its task executed once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from nectar.errors import RegistryUnavailable
from nectar.registry import RunState
from tests.conftest import free_port
from tests.faults.conftest import CHAIN, CHAIN_TYPE, waitfor
from tests.helpers.postgres import PostgresServer
from tests.scale.conftest import Deployment

RUNS = 12


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


def test_a_postgresql_crash_is_ridden_out(deployment: Deployment, own_postgres: PostgresServer) -> None:
    deployment.start_scheduler()
    node = deployment.start_node(workers=2)
    gate = deployment.tmp / "gate"  # created once the database is back: this run is still running then
    long = deployment.submit(node, 50, gate=str(gate))
    for n in range(RUNS - 1):
        deployment.submit(node, n, sleeps="0.5")
    waitfor(lambda: deployment.ledger.count("end") >= 3, 60, "some runs to end", interval=0.1)

    own_postgres.halt()
    halted = time.monotonic()

    refused = requests.post(f"{node.url}/api/chains/{CHAIN_TYPE}/{CHAIN}/LedgerTask", params={"n": 99}, timeout=60)
    assert refused.status_code == 503, refused.text
    assert refused.json()["message"].startswith("registry unavailable: PostgreSQL")
    assert refused.headers["Retry-After"] == "2"
    health = requests.get(f"{node.url}/healthz", timeout=60)
    assert health.status_code == 503 and health.json()["data"]["registry"]["ok"] is False
    # down longer than a lease (3 s): a running attempt could not heartbeat, but it is not lost for that
    time.sleep(max(0.0, deployment.settings.lease_timeout + 2 - (time.monotonic() - halted)))
    assert node.worker.poll() is None and node.api.poll() is None, "a process died with the database"

    own_postgres.resume()
    gate.touch()

    waitfor(lambda: done(deployment) == RUNS, 120, "every run accepted before the crash to be DONE", interval=0.5)
    ended = Counter(e.task_id for e in deployment.ledger.executions() if e.end is not None)
    assert len(ended) == RUNS and set(ended.values()) == {1}
    assert deployment.ledger.duplicates() == []
    assert deployment.registry.get(long["run_id"]).attempt == 1  # type: ignore[union-attr]
    assert deployment.submit(node, 99)["job_status"] == "PENDING"  # and new submissions are taken again
