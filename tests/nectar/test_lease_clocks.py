"""The lease rule against a real PostgreSQL: the status read, the heartbeat and the reclaim count a lease from the
server's restart alike, and a node whose clock is ahead of or behind the server's counts it as one whose clock agrees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import nectar.leases
import nectar.registry.sql
from nectar.leases import lapsed
from nectar.registry import Run, RunState
from nectar.registry.postgres import PostgresRunStore
from nectar.registry.sql import SqlRunStore
from nectar.registry.sqlite import SQLiteRunStore
from tests.clock import Clock
from tests.conftest import free_port, wait_until
from tests.helpers.postgres import PostgresServer
from tests.helpers.registries import closed_at_end

DIGEST = "0123456789abcdef0123456789abcdef"
#: a lease longer than the server of this file has been up when a test reads it (seconds)
LONG = 3600.0
#: a lease the server of this file has been up longer than, once a test waited for it (seconds)
SHORT = 1.0
#: how far the node's clock is from the server's, where it is not (seconds)
SKEW = 2 * LONG


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this file's own: its tests restart it, or need it started lately."""
    server = PostgresServer.start(free_port())
    yield server
    server.stop()


def up_for(server: PostgresServer) -> float:
    """How long ``server`` has been up, in its own clock."""
    with psycopg.connect(server.url) as conn:
        row = conn.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp() - pg_postmaster_start_time())").fetchone()
    assert row is not None
    return float(row[0])


def running(runs: SqlRunStore, n: int) -> Run:
    """A run claimed and renewed by ``h:1`` now (the node's clock)."""
    run = runs.submit(Run.new(f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {}, f"A_{n}"))[0]
    assert runs.claim("parent", run_id=run.id) is not None
    assert runs.heartbeat(run.id, 1, "h:1")
    return run


def said(runs: SqlRunStore, run: Run, lease: float) -> str | None:
    """What a status read says of ``run``'s attempt (:func:`nectar.leases.lapsed` of the run as a status reads it)."""
    status, _ = runs.latest_status(run.key)
    assert status is not None and status.state == RunState.RUNNING
    return lapsed(status, runs, lease)


def node_clock(monkeypatch: pytest.MonkeyPatch, skew: float = 0.0) -> Clock:
    """This node's clock, ``skew`` seconds from the server's, as the registry and the status read see it."""
    return Clock(start=time.time() + skew).install(monkeypatch, nectar.registry.sql, nectar.leases)


def test_a_status_read_counts_a_lease_from_the_registrys_restart_as_the_heartbeat_and_the_reclaim_do(
    own_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease silent since before PostgreSQL restarted is held until a lease after the restart: the attempt renews
    it, no worker reclaims it, and a status read says nothing of it (it said "no heartbeat for 7200s" of a lease the
    heartbeat and the reclaim counted as held)."""
    clock = node_clock(monkeypatch)
    runs = closed_at_end(PostgresRunStore(own_postgres.create_database()))
    run = running(runs, 0)
    own_postgres.halt()
    own_postgres.resume()
    clock.advance(2 * LONG)  # silent for two leases, the server up for less than one
    assert said(runs, run, LONG) is None
    assert runs.reclaim(LONG) == []
    assert runs.heartbeat(run.id, 1, "h:1", LONG)


@pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_node_whose_clock_is_off_counts_a_lease_from_the_registrys_start_in_the_servers_clock(
    own_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """The registry's start, counted in the server's clock, is the same for a node whose clock is two hours ahead of
    the server's or behind it. Ahead, the start was taken as two hours further back: a lease silent for longer than
    its timeout yet since the server started was taken as run out (the heartbeat refused, the attempt reclaimed).
    Behind, the start was taken as ahead of the node's now: no lease silent since before it ever ran out (a lost
    attempt never reclaimed by lease)."""
    clock = node_clock(monkeypatch, skew)
    runs = closed_at_end(PostgresRunStore(own_postgres.create_database()))
    held, lost = running(runs, 0), running(runs, 1)
    clock.advance(LONG + 1)  # both silent for longer than LONG, the server up for less than that: held
    assert said(runs, held, LONG) is None
    assert runs.reclaim(LONG) == []
    assert runs.heartbeat(held.id, 1, "h:1", LONG)
    wait_until(lambda: up_for(own_postgres) > SHORT)
    assert (said(runs, lost, SHORT) or "").startswith("no heartbeat for ")  # for as long as the server has been up
    assert [run.id for run in runs.reclaim(SHORT)] == [lost.id]
    assert not runs.heartbeat(lost.id, 1, "h:1", SHORT)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_status_read_says_a_lease_ran_out_when_the_heartbeat_and_the_reclaim_do(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The three readers of a lease agree where it ran out too: SQLite has no start of its own (a file any process
    opens: a lease counts from its last heartbeat alone), PostgreSQL's counts once it has been up for longer."""
    clock = node_clock(monkeypatch)
    runs: SqlRunStore
    if dialect == "postgres":
        runs = closed_at_end(PostgresRunStore(request.getfixturevalue("database_url")))
        wait_until(lambda: up_for(request.getfixturevalue("postgres")) > 2 * SHORT)
    else:
        runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run = running(runs, 0)
    clock.advance(2 * SHORT)
    assert said(runs, run, SHORT) == f"no heartbeat for {2 * SHORT:.0f}s"
    assert not runs.heartbeat(run.id, 1, "h:1", SHORT)
    assert [lost.id for lost in runs.reclaim(SHORT)] == [run.id]
