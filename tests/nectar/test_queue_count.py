"""The queue's count: kept by the database in each transaction that changes a run's state to or from PENDING.

Each test runs against SQLite and a real PostgreSQL; the bound it enforces is exact under concurrent
submissions, and a transaction killed by SIGKILL half-way leaves the count as right as its rows.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar.errors import QueueFull
from nectar.registry import RetryPolicy, Run, RunState
from nectar.registry.postgres import PostgresRunStore
from nectar.registry.schedules import FireOutcome
from nectar.registry.schema import ONE_ACTIVE, RUN_COLUMNS
from nectar.registry.sql import ACTIVE, FRESH_COLUMNS
from nectar.registry.sqlite import INSERT_BOUNDED, INSERT_FRESH_BOUNDED, SQLiteRunStore
from nectar.registry.triggers import Seen
from nectar.registry.triggers_sql import SqlTriggers
from nectar.schedules.model import ScheduleRecord, ScheduleSpec
from nectar.triggers.model import TriggerRecord, TriggerSpec
from tests.helpers.registries import closed_at_end, known

REPO = Path(__file__).resolve().parents[2]
DIGEST = "0123456789abcdef0123456789abcdef"
#: concurrent submitters, and the bound they submit past
SUBMITTERS, BOUND = 12, 20


def new_run(n: int, policy: RetryPolicy | None = None, state: RunState = RunState.PENDING) -> Run:
    run = Run.new(
        f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {"n": str(n)}, f"A_{n}", policy
    )
    return dataclasses.replace(run, state=state)


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A registry's location: a SQLite file, or a real PostgreSQL database's URL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("database_url"))
    return str(tmp_path / "data" / "runs.sqlite3")


def open_store(where: str) -> SqlTriggers:
    return (
        closed_at_end(PostgresRunStore(where))
        if where.startswith("postgresql:")
        else closed_at_end(SQLiteRunStore(Path(where)))
    )


def counted_right(runs: SqlTriggers) -> int:
    """The count the database keeps, checked against a scan of the table."""
    assert runs.queued() == runs.count(RunState.PENDING), "the queue's count drifted from the PENDING runs"
    return runs.queued()


def test_the_count_follows_every_change_of_a_run_to_and_from_pending(where: str) -> None:
    every_change(open_store(where), counted_right)


def every_change(runs: SqlTriggers, counted_right: Callable[[SqlTriggers], int]) -> None:
    """Move runs through every path that changes a state (``counted_right``: checks the counts, answers the queue's)."""
    retried = RetryPolicy(retries=1, delay=0.0)
    queued = [runs.submit(new_run(n, retried))[0] for n in range(6)]
    assert counted_right(runs) == 6
    assert not runs.submit(new_run(0))[1] and counted_right(runs) == 6  # an identical run is answered, not queued

    first = runs.claim("w")
    assert first is not None and counted_right(runs) == 5
    assert runs.requeue(first.id, 1) and counted_right(runs) == 6
    first = runs.claim("w", run_id=first.id)
    assert first is not None and runs.requeue(first.id, 1, waiting=True) and counted_right(runs) == 6
    first = runs.claim("w", run_id=first.id)
    assert first is not None and runs.requeue_unbegun("w") == [first.id] and counted_right(runs) == 6
    first = runs.claim("w", run_id=first.id)
    assert first is not None and runs.fail(first.id, 1, "ATask", "boom") == RunState.PENDING  # a retry: queued again
    assert counted_right(runs) == 6
    first = runs.claim("w", run_id=first.id)
    assert first is not None and runs.fail(first.id, 2, "ATask", "boom") == RunState.FAILED and counted_right(runs) == 5

    runs.cancel(queued[1].id)
    assert counted_right(runs) == 4
    running = runs.claim("w", run_id=queued[2].id)
    assert running is not None and counted_right(runs) == 3
    runs.cancel(running.id)  # a RUNNING run cancelled leaves the count as it was
    assert counted_right(runs) == 3

    waits = runs.claim("w", run_id=queued[3].id)
    assert waits is not None and runs.wait(waits.id, 1, ["s3://b/x"], time.time() + 60, 0.0, "x is missing")
    assert counted_right(runs) == 2
    assert runs.wake(waits.id, "x is there") and counted_right(runs) == 3
    waits = runs.claim("w", run_id=queued[3].id)
    assert waits is not None and runs.wait(waits.id, 1, ["s3://b/x"], time.time() + 60, 0.0, "x is missing")
    assert runs.end_wait(waits.id, "x never came") == RunState.FAILED and counted_right(runs) == 2

    lost = runs.claim("w", run_id=queued[4].id)
    assert lost is not None and counted_right(runs) == 1
    assert [run.id for run in runs.reclaim(60.0, dead=lambda worker: True)] == [lost.id]  # retried: queued again
    assert counted_right(runs) == 2
    assert runs.complete(known(runs.claim("w", run_id=lost.id)).id, 2)
    assert counted_right(runs) == 1

    runs.import_runs([new_run(10), new_run(11, state=RunState.DONE), new_run(12, state=RunState.WAITING)])
    assert counted_right(runs) == 2

    now = time.time()
    spec = ScheduleSpec.from_definition({"task": "t/c_chain/ATask", "interval_s": 60})
    assert runs.add_schedule(ScheduleRecord("s1", "api", spec, 1, False, now, now, now))
    fired = FireOutcome(run=dataclasses.replace(new_run(20), schedule_id="s1", fire_time=now))
    assert runs.fire("s1", 1, now, fired) == "queued" and counted_right(runs) == 3
    preload = FireOutcome(
        run=dataclasses.replace(new_run(21, state=RunState.WAITING), schedule_id="s1", fire_time=now + 60),
        first=new_run(22),
    )
    assert runs.fire("s1", 1, now + 60, preload) == "queued" and counted_right(runs) == 4  # its import run, queued

    trigger = TriggerSpec.from_definition({"task": "t/c_chain/ATask", "prefix": "s3://bucket/in/", "param": "n"})
    assert runs.add_trigger(TriggerRecord("t1", "api", trigger, 1, False, "", now, now))
    claim = runs.claim_objects("t1", 1, [Seen("in/a", "v1")], lambda seen: FireOutcome(run=new_run(30)), now)
    assert claim.state == "queued" and counted_right(runs) == 5
    joined = runs.claim_objects("t1", 1, [Seen("in/b", "v1")], lambda seen: FireOutcome(run=new_run(30)), now)
    assert joined.run_id == claim.run_id and counted_right(runs) == 5  # the active run of its key: nothing queued

    while (claimed := runs.claim("w")) is not None:
        assert runs.complete(claimed.id, claimed.attempt)
    assert counted_right(runs) == 0


def test_a_registry_of_an_earlier_schema_counts_its_queue_when_it_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    for n in range(5):
        runs.submit(new_run(n))
    assert runs.claim("w") is not None
    with sqlite3.connect(path) as conn:  # back to version 6: no counts, no triggers
        conn.execute("DROP TABLE run_counts")
        conn.execute("DROP TABLE run_durations")
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("PRAGMA user_version = 6")
    conn.close()

    upgraded = closed_at_end(SQLiteRunStore(path))
    assert counted_right(upgraded) == 4
    upgraded.submit(new_run(9))
    assert counted_right(upgraded) == 5


def test_the_bound_is_exact_under_concurrent_submissions(where: str) -> None:
    """Submitters on connections of their own, all released at once, past the bound: exactly the bound queued."""
    stores = [open_store(where) for _ in range(SUBMITTERS)]
    stores[0].submit(new_run(10_000))  # one already queued
    barrier = threading.Barrier(SUBMITTERS)
    answers: Counter[str] = Counter()
    lock = threading.Lock()

    def submitter(index: int) -> None:
        barrier.wait(timeout=60)
        for k in range(4):
            try:
                stores[index].submit(new_run(index * 100 + k), max_pending=BOUND)
                outcome = "queued"
            except QueueFull as exc:
                outcome = (
                    "refused" if str(exc) == f"{BOUND} runs are queued, the most this service accepts" else str(exc)
                )
            with lock:
                answers[outcome] += 1

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == {"queued": BOUND - 1, "refused": SUBMITTERS * 4 - BOUND + 1}
    assert counted_right(stores[0]) == BOUND


@pytest.mark.parametrize("insert, columns", [(INSERT_BOUNDED, RUN_COLUMNS), (INSERT_FRESH_BOUNDED, FRESH_COLUMNS)])
def test_a_bounded_sqlite_submission_makes_no_temporary_table(
    tmp_path: Path, insert: str, columns: tuple[str, ...]
) -> None:
    """The bounded insert of a new run (of its every column, or of those a new run has a value in), in its SQLite
    program: no temporary table, neither of a run's columns (SQLite copied the row of an ``INSERT ... SELECT`` into
    one, as ``runs`` has triggers) nor of the active states (the partial unique index's ``state IN (...)``); and what
    it answers, in and past the bound."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    try:
        runs.submit(new_run(1))
        with sqlite3.connect(tmp_path / "runs.sqlite3") as conn:
            program = conn.execute(f"EXPLAIN {insert}", [None] * (len(columns) + 1)).fetchall()
        conn.close()
        assert [row for row in program if row[1] == "OpenEphemeral"] == []
        assert runs.submit(new_run(1), max_pending=1)[1] is False  # its key active: the active run, full or not
        with pytest.raises(QueueFull):
            runs.submit(new_run(2), max_pending=1)
        queued, created = runs.submit(new_run(2), max_pending=2)
        assert created and runs.get(queued.id) == queued
        assert counted_right(runs) == 2
    finally:
        runs.close()


def test_a_registry_of_schema_12_keeps_one_active_run_a_key_as_it_upgrades(tmp_path: Path) -> None:
    """Schema 13 writes the condition of the index of one active run a key as comparisons: a registry of 12 (its
    ``state IN (...)``) is given them as it opens, and a key active there still has its one run."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    active = runs.submit(new_run(1))[0]
    runs.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX runs_one_active_per_key")
        conn.execute(f"CREATE UNIQUE INDEX runs_one_active_per_key ON runs(key) WHERE {ACTIVE}")
        conn.execute("PRAGMA user_version = 12")
    conn.close()
    upgraded = closed_at_end(SQLiteRunStore(path))
    try:
        assert upgraded.submit(new_run(1), max_pending=10) == (active, False)
        assert upgraded.submit(new_run(1)) == (active, False)
        with sqlite3.connect(path) as conn:
            (made,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_one_active_per_key'").fetchone()
        conn.close()
        assert made.endswith(f"WHERE {ONE_ACTIVE}")
        assert counted_right(upgraded) == 1
    finally:
        upgraded.close()


#: a process that opens a transaction which queues a run, claims another and ends a third, then waits to be killed
HALF_DONE = """
import sys, time
from tests.nectar.test_queue_count import new_run, open_store
runs = open_store(sys.argv[1])
queued, claimed = new_run(900), runs.get(sys.argv[2])
with runs._db() as db:
    runs._queue_unless_active(db, queued)
    runs._exec(db, "UPDATE runs SET state = 'RUNNING', attempt = 1 WHERE id = ?", (claimed.id,))
    runs._exec(db, "UPDATE runs SET state = 'CANCELLED' WHERE state = 'PENDING' AND id <> ?", (queued.id,))
    print("half-done", flush=True)
    time.sleep(600)
"""


def test_a_transaction_killed_half_way_leaves_the_count_right(where: str) -> None:
    runs = open_store(where)
    made = [runs.submit(new_run(n))[0] for n in range(3)]
    child = subprocess.Popen(
        [sys.executable, "-c", HALF_DONE, where, made[0].id],
        cwd=REPO,
        env={**os.environ, **lifeline_env()},  # dies with this process, even SIGKILLed (harness/lifeline.py)
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half-done", "the child never reached the middle of its transaction"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    after = open_store(where)
    assert counted_right(after) == 3  # none of it happened
    assert after.submit(new_run(3), max_pending=4)[1]
    with pytest.raises(QueueFull, match="4 runs are queued"):
        after.submit(new_run(4), max_pending=4)
    assert counted_right(after) == 4
