"""The lease rule against a real PostgreSQL: the status read, the heartbeat and the reclaim count a lease from the
server's restart alike, and a node whose clock is ahead of or behind the server's counts it as one whose clock agrees.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import nectar.leases
import nectar.registry.postgres
import nectar.registry.sql
from nectar.config import Settings
from nectar.executor import Executor
from nectar.leases import AttemptLease, check_clock, lapsed
from nectar.registry import Run, RunState
from nectar.registry.postgres import PostgresRunStore
from nectar.registry.sql import SqlRunStore
from nectar.registry.sqlite import SQLiteRunStore
from tests.clock import Clock
from tests.conftest import free_port, wait_until
from tests.helpers.postgres import PostgresServer
from tests.helpers.registries import closed_at_end, known

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


@pytest.mark.parametrize("skew", [30.0, -30.0, 0.0], ids=["ahead", "behind", "in-sync"])
def test_a_worker_warns_as_it_starts_when_its_clock_is_off_the_registrys_by_a_share_of_the_lease(
    settings: Settings,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    skew: float,
) -> None:
    """A worker compares its node's clock with PostgreSQL's as it starts (its first watch): 30 s off, with a lease of
    20 s and heartbeats every 2 s (node clocks must stay within 9 s of the registry's), it says so at WARNING, naming
    the skew (as measured: within the read's half round trip of it) and the lease; in sync, it says nothing. Before,
    nothing compared them."""
    node = types.SimpleNamespace(time=lambda: time.time() + skew, monotonic=time.monotonic, sleep=time.sleep)
    monkeypatch.setattr(nectar.registry.postgres, "time", node)  # how the node reads its clock: off by ``skew``
    worker = settings.replace(database_url=database_url, scheduler_url=None, lease_timeout=20.0, heartbeat_interval=2.0)
    executor = closed_at_end(Executor(worker, concurrency=1))
    with caplog.at_level(logging.WARNING, logger="nectar.leases"):
        executor._watch()
    said = [record.getMessage() for record in caplog.records if record.name == "nectar.leases"]
    if skew == 0.0:
        assert said == []
        return
    assert len(said) == 1, said
    measured = re.search(r"clock is ([0-9.]+)s (ahead of|behind) the registry's \(±([0-9.]+)s\)", said[0])
    assert measured is not None, said[0]
    assert abs(float(measured[1]) - abs(skew)) <= float(measured[3]) + 0.002  # the message's rounding, 1 ms each
    assert measured[2] == ("ahead of" if skew > 0 else "behind")
    assert "NECTAR_LEASE 20s, NECTAR_HEARTBEAT 2s" in said[0] and "within 9s of the registry's" in said[0]


def test_a_registry_without_a_clock_of_its_own_has_no_skew(tmp_path: Path) -> None:
    """SQLite is a file the processes of one host open: their clock is the registry's."""
    with SQLiteRunStore(tmp_path / "runs.sqlite3") as runs:
        assert check_clock(runs, 20.0, 2.0) is None


def test_an_attempt_whose_clock_stepped_forward_since_its_claim_loses_its_lease_and_is_not_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt counts its maximum runtime from its claim, read in its node's wall clock, which its worker's loop
    wrote the claim in: a clock stepped forward by more than a lease in between (NTP, a resumed VM) made a claim that
    no live attempt has. It was counted from then: the attempt's first beat failed the run "timed out", not retried
    (a step of an hour, a maximum runtime of a minute). Now its lease, run out by the registry's rule in the same
    clock, is lost at that beat, and a worker's reclaim retries the run per its policy."""
    clock = Clock(start=time.time() - LONG).install(monkeypatch, nectar.registry.sql)  # the claim, an hour back
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run = runs.submit(Run.new(f"chains/t/c_chain/ATask/{DIGEST}/out.txt", "t", "c_chain", "ATask", {}, "A_0"))[0]
    claimed = runs.claim("h:1", run_id=run.id)
    assert claimed is not None
    clock.advance(LONG)  # the node's clock stepped forward by an hour: the registry's and the lease's agree again
    leases: list[AttemptLease] = []

    def attempt() -> None:  # on a thread of its own: the lease signals no main thread
        with AttemptLease(runs, claimed, interval=0.05, max_runtime=60.0, lease_timeout=20.0) as lease:
            leases.append(lease)
            wait_until(lambda: lease.lost)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    assert leases and leases[0].timed_out is None  # was "timed out: attempt 1 ran longer than ... (60s)"
    assert (known(runs.get(run.id)).state, [lost.id for lost in runs.reclaim(20.0)]) == (RunState.RUNNING, [run.id])
