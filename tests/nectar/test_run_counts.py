"""Runs by state and ended runs' durations by task: counted by the database with each change, equal to a scan.

Each test runs against SQLite and a real PostgreSQL: every path of a run's life, an upgrade that fills the
counts from the runs there, and writers of every kind at once (no deadlock on PostgreSQL's counted rows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import time
from typing import Any

import psycopg
import pytest

from nectar.errors import RunFinished
from nectar.registry import Durations, RetryPolicy, RunState
from nectar.registry.counts import DURATION_BOUNDS
from nectar.registry.schema import values
from nectar.registry.triggers_sql import SqlTriggers
from tests.nectar import test_queue_count
from tests.nectar.test_queue_count import every_change, new_run, open_store

#: the registry of each test: a SQLite file, and a real PostgreSQL database
where = test_queue_count.where
#: what /metrics read before the counts: every run grouped by state, and the ended ones by task
SCAN_STATES = "SELECT state, COUNT(*) FROM runs GROUP BY state"
SCAN_DURATIONS = (
    "SELECT chain_type || '/' || chain || '/' || task AS ref, COUNT(*) AS n, SUM(finished_at - started_at) AS s"
    + "".join(
        f", SUM(CASE WHEN finished_at - started_at <= {bound!r} THEN 1 ELSE 0 END) AS b{i}"
        for i, bound in enumerate(DURATION_BOUNDS)
    )
    + " FROM runs WHERE state IN ('DONE', 'FAILED') AND started_at IS NOT NULL AND finished_at IS NOT NULL "
    "GROUP BY chain_type, chain, task"
)


def scanned(runs: SqlTriggers) -> tuple[dict[RunState, int], dict[str, Durations]]:
    """Runs by state and durations by task, as a scan of every run finds them."""

    def scan(db: Any) -> tuple[list[Any], list[Any]]:
        return runs._exec(db, SCAN_STATES).fetchall(), runs._exec(db, SCAN_DURATIONS).fetchall()

    states, durations = runs._read(scan)
    by_state = {state: 0 for state in RunState}
    by_state.update({RunState(state): int(n) for state, n in map(values, states)})
    by_task = {}
    for row in map(values, durations):
        by_task[row[0]] = Durations(tuple(int(n) for n in row[3:]), int(row[1]), float(row[2]))
    return by_state, by_task


def counted_right(runs: SqlTriggers) -> int:
    """The counts the database keeps, checked against a scan of the runs; the queue's count."""
    by_state, by_task = scanned(runs)
    assert runs.count_by_state() == by_state, "the counts by state drifted from the runs"
    counted = runs.durations()
    assert counted.keys() == by_task.keys(), "the tasks with durations drifted from the runs"
    for task, seen in by_task.items():
        assert (counted[task].within, counted[task].count) == (seen.within, seen.count), task
        assert counted[task].total == pytest.approx(seen.total, abs=1e-6), task
    assert runs.queued() == by_state[RunState.PENDING]
    return runs.queued()


def test_the_counts_follow_every_change_of_a_run(where: str) -> None:
    runs = open_store(where)
    every_change(runs, counted_right)
    assert sum(seen.count for seen in runs.durations().values()) > 0  # the walk ended runs, and they were timed
    now = time.time()
    runs.import_runs(  # ended runs written as they are, of another task, in every bucket and past the last
        dataclasses.replace(new_run(100 + i), task="BTask", state=state, started_at=now - took, finished_at=now)
        for i, took in enumerate((0.1, 0.7, 3.0, 40.0, 1000.0, 20_000.0))
        for state in (RunState.DONE, RunState.FAILED)
    )
    counted_right(runs)
    assert runs.durations()["t/c_chain/BTask"].within == (2, 4, 4, 6, 6, 6, 8, 8, 8, 10, 10)


def downgrade_to_8(where: str) -> None:
    """The registry as version 8 left it: no counts but the queue's (whose triggers stay, as they were)."""
    if where.startswith("postgresql:"):
        with psycopg.connect(where, autocommit=True) as pg:
            pg.execute("DROP TRIGGER runs_counted ON runs")
            pg.execute("DROP FUNCTION nectar_count_runs()")
            pg.execute("DROP TABLE run_counts")
            pg.execute("DROP TABLE run_durations")
            pg.execute("UPDATE nectar_schema SET version = 6")  # PostgreSQL records schema 8 as 6
        return
    with sqlite3.connect(where) as lite:
        for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            lite.execute(f"DROP TRIGGER {name}")
        lite.execute("DROP TABLE run_counts")
        lite.execute("DROP TABLE run_durations")
        lite.execute("PRAGMA user_version = 8")
    lite.close()


def test_a_registry_of_an_earlier_schema_counts_its_runs_when_it_upgrades(where: str) -> None:
    runs = open_store(where)
    made = [runs.submit(new_run(n))[0] for n in range(6)]
    for run in made[:3]:
        claimed = runs.claim("w", run_id=run.id)
        assert claimed is not None and runs.complete(claimed.id, 1)
    assert runs.claim("w", run_id=made[3].id) is not None
    runs.cancel(made[4].id)
    downgrade_to_8(where)

    upgraded = open_store(where)
    assert counted_right(upgraded) == 1
    assert upgraded.count_by_state()[RunState.DONE] == 3 and upgraded.durations()["t/c_chain/ATask"].count == 3
    upgraded.submit(new_run(9))
    assert counted_right(upgraded) == 2


#: writers at once, and the runs each moves through its life
WRITERS, RUNS_EACH = 6, 8


def test_writers_of_every_kind_at_once_keep_the_counts_right(where: str) -> None:
    """Submissions, claims, completions, retries, cancels and a reclaim of many runs in one transaction, at once:
    every one ends (no deadlock between the counted rows on PostgreSQL) and the counts equal a scan."""
    stores = [open_store(where) for _ in range(WRITERS + 1)]
    barrier = threading.Barrier(WRITERS + 1)
    failures: list[BaseException] = []
    retried = RetryPolicy(retries=1, delay=0.0)

    def writer(index: int) -> None:
        runs = stores[index]
        try:
            barrier.wait(timeout=60)
            for k in range(RUNS_EACH):
                run = runs.submit(dataclasses.replace(new_run(index * 100 + k, retried), task=f"T{k % 3}"))[0]
                claimed = runs.claim(f"w{index}", run_id=run.id)
                if claimed is None:
                    continue
                # each may find its run reclaimed meanwhile (and answer so): what matters is that the counts follow
                if k % 4 == 0:
                    runs.complete(claimed.id, claimed.attempt)
                elif k % 4 == 1:
                    runs.fail(claimed.id, claimed.attempt, "ATask", "boom")
                elif k % 4 == 2:
                    with contextlib.suppress(RunFinished):  # reclaimed for good meanwhile
                        runs.cancel(claimed.id)
                # k % 4 == 3: left RUNNING, for the reclaim
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    def reclaimer() -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(RUNS_EACH):
                stores[WRITERS].reclaim(0.0)  # every RUNNING run is lost: many fail in one transaction
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    threads.append(threading.Thread(target=reclaimer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [thread for thread in threads if thread.is_alive()], "a writer never ended"
    assert not failures, failures
    counted_right(stores[0])
    assert sum(stores[0].count_by_state().values()) == WRITERS * RUNS_EACH
