"""A key's latest run: its active run if it has one, else its ended run written last, each found through an index.

The index of runs by key (``runs_by_key``) holds ended runs only (schema 15): a submission writes no entry there,
where each wrote one on a random leaf of a b-tree as large as the registry; the active run of a key is found through
the unique ``runs_one_active_per_key``. Each test runs against SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest

from nectar.registry import RetryPolicy, Run, RunFilter, RunState
from nectar.registry.model import time_ordered_id
from nectar.registry.postgres import FIRST_VERSION, PostgresRunStore
from nectar.registry.postgres import SCHEMA_VERSION as PG_VERSION
from nectar.registry.schema import ACTIVE_OF_KEY, ENDED, ONE_ACTIVE, RUNS, values
from nectar.registry.sqlite import SCHEMA_VERSION, SQLiteRunStore
from nectar.registry.triggers_sql import SqlTriggers
from tests.helpers.registries import known
from tests.nectar import test_queue_count
from tests.nectar.test_queue_count import open_store

where = test_queue_count.where

DIGEST = "0123456789abcdef0123456789abcdef"
#: the clock reading runs are queued at (review7's)
READING = 2000.0
#: a key's every read of a run: the status lookup's, :meth:`latest`'s and the look-up of its active run
LATEST_INDEXES = ("runs_one_active_per_key", "runs_by_key")


def run_of(n: int, queued_at: float, policy: RetryPolicy | None = None) -> Run:
    made = Run.new(f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {"n": str(n)}, f"A_{n}")
    if policy is not None:
        made = Run.new(made.key, "t", "c_chain", "ATask", made.params, made.task_id, policy)
    return dataclasses.replace(made, queued_at=queued_at)


def latest_id(runs: SqlTriggers, key: str) -> str | None:
    """The id of the key's latest run as :meth:`latest` and the status lookup both answer it (checked the same)."""
    found, status = runs.latest(key), runs.latest_status(key)[0]
    assert (None if found is None else found.id) == (None if status is None else status.id)
    return None if found is None else found.id


def ended_entries(path: str) -> int:
    """The entries of SQLite's ``runs_by_key`` index, counted in its leaves."""
    with sqlite3.connect(path) as lite:
        (cells,) = lite.execute("SELECT SUM(ncell) FROM dbstat WHERE name = 'runs_by_key' AND pagetype = 'leaf'")
    lite.close()
    return int(cells[0] or 0)


def test_states_are_active_or_ended_never_both() -> None:
    """Every state is in one of the two conditions: a run in neither would be no key's latest."""
    for state in RunState:
        assert (f"'{state.value}'" in ONE_ACTIVE) != (f"'{state.value}'" in ENDED), state


def test_the_latest_run_of_a_key_is_its_active_run_else_its_ended_run_written_last(where: str) -> None:
    """A key's active run (queued, running, waiting, queued again for its retry) is its latest, whatever the queue
    time of its ended runs; without one, its ended run written last (done, failed or cancelled), whatever the clock
    readings they were queued at (a clock that stepped back, another node's): a retried run is written once, so
    once it has ended it is still the latest, queued before the others or not."""
    runs = open_store(where)
    key = run_of(1, 0.0).key
    assert latest_id(runs, key) is None
    ended = []
    for queued_at in (3000.0, 1000.0, 2000.0):  # several ended runs, written out of their queue order
        made = runs.submit(run_of(1, queued_at))[0]
        runs.cancel(made.id)
        ended.append(made.id)
    assert latest_id(runs, key) == ended[2]

    active = runs.submit(run_of(1, 1500.0, RetryPolicy(retries=1, delay=0.0)))[0]  # queued before an ended one
    assert latest_id(runs, key) == active.id
    claimed = runs.claim("w", run_id=active.id)
    assert claimed is not None and latest_id(runs, key) == active.id
    assert runs.fail(active.id, 1, "ATask", "boom") == RunState.PENDING  # queued again for its retry
    assert latest_id(runs, key) == active.id
    assert runs.claim("w", run_id=active.id) is not None
    assert runs.wait(active.id, 2, ["s3://b/in"], until=9e9, next_check=0.0, reason="absent")
    assert known(runs.get(active.id)).state == RunState.WAITING
    assert latest_id(runs, key) == active.id
    assert runs.wake(active.id) and runs.claim("w", run_id=active.id) is not None
    assert runs.fail(active.id, 2, "ATask", "boom again") == RunState.FAILED  # its last attempt: ended

    assert latest_id(runs, key) == active.id  # ended now, queued before two of the ended runs, written after them
    done = runs.submit(run_of(1, 500.0))[0]
    assert runs.claim("w", run_id=done.id) is not None and runs.complete(done.id, 1)
    assert latest_id(runs, key) == done.id


def end(runs: SqlTriggers, run: Run, state: RunState) -> None:
    """Bring a queued run to ``state``: done, failed (for good) or cancelled."""
    if state == RunState.CANCELLED:
        runs.cancel(run.id)
        return
    assert runs.claim("w", run_id=run.id) is not None
    if state == RunState.DONE:
        assert runs.complete(run.id, 1)
    else:
        assert runs.fail(run.id, 1, "ATask", "boom", retryable=False) == RunState.FAILED


ENDED_STATES = (RunState.DONE, RunState.FAILED, RunState.CANCELLED)


@pytest.mark.parametrize(("first", "last"), list(itertools.permutations(ENDED_STATES, 2)))
def test_of_two_ended_runs_queued_at_the_same_clock_reading_the_latest_is_the_one_made_last(
    where: str, first: RunState, last: RunState
) -> None:
    """review6 (round 52): a key's run ended, queued again at the same clock reading (its queue time and the
    millisecond of its id the same: a clock that did not move), and ended: the run written and made last is the key's
    latest, whatever the two states' names (schema 15's ``runs_by_key`` ordered such ties by them: FAILED, DONE,
    CANCELLED)."""
    runs = open_store(where)
    both = [run_of(1, 1000.0) for _ in range(2)]
    ids = [time_ordered_id(1000.0) for _ in both]  # as Run.new makes them at that reading: one after the other
    made = []
    for run, made_id, state in zip(both, ids, (first, last), strict=True):
        made.append(runs.submit(dataclasses.replace(run, id=made_id))[0])
        end(runs, made[-1], state)
    assert [run.id for run in made] == ids
    assert latest_id(runs, made[0].key) == made[1].id, "the run made last is the key's latest"


def test_a_submission_writes_no_entry_in_the_index_of_ended_runs(tmp_path: Path) -> None:
    """SQLite's ``runs_by_key`` holds a run once it has ended (done, failed, cancelled), never while it is active."""
    where = str(tmp_path / "runs.sqlite3")
    runs = open_store(where)
    made = [runs.submit(run_of(n, 1000.0 + n))[0] for n in range(4)]
    assert runs.claim("w", run_id=made[0].id) is not None
    assert ended_entries(where) == 0
    assert runs.complete(made[0].id, 1)
    runs.cancel(made[1].id)
    assert ended_entries(where) == 2


def plan(runs: SqlTriggers, where: str, query: str, args: tuple[str, ...]) -> str:
    """How the database reads ``query``: SQLite's query plan; PostgreSQL's with sequential scans off, so that a plan
    that still reads the table in full is one that no index could answer (an empty table's is cheaper so, else)."""
    if where.startswith("postgresql:"):
        with runs._db() as db:
            db.execute("SET LOCAL enable_seqscan = off")
            return "\n".join(values(row)[0] for row in runs._exec(db, f"EXPLAIN {query}", args).fetchall())
    return "\n".join(row[3] for row in runs._read(lambda db: db.execute(f"EXPLAIN QUERY PLAN {query}", args)))


def test_every_read_of_a_key_s_run_follows_an_index(where: str) -> None:
    """The status lookup's read, :meth:`latest`'s and the look-up of a key's active run (a submission of a key already
    active) each find the run through the indexes of runs by key, and none reads the table of runs in full or sorts:
    ``runs_by_key`` holds a key's ended runs in the order the reads take the latest by, the order they were written
    (SQLite's rowid, PostgreSQL's ``written``)."""
    runs = open_store(where)
    reads = {
        "status": (runs.STATUS_READ, ("k", "k"), LATEST_INDEXES),
        "latest": (f"SELECT {RUNS} FROM runs WHERE {runs.LATEST_OF_KEY}", ("k", "k"), LATEST_INDEXES),
        "active": (f"SELECT {RUNS} FROM runs WHERE {ACTIVE_OF_KEY}", ("k",), LATEST_INDEXES[:1]),
    }
    for name, (query, args, indexes) in reads.items():
        found = plan(runs, where, query, args)
        assert "Seq Scan on runs" not in found and "SCAN r" not in found, (name, found)
        assert "Sort" not in found and "TEMP B-TREE" not in found, (name, found)
        assert all(index in found for index in indexes), (name, found)


#: ``runs_by_key`` as the versions before made it: 14 (every run, by queue time), 15 (ended runs, ties by state) and
#: 16 (ended runs, ties by SQLite's rowid or PostgreSQL's id)
INDEX_OF_VERSION = {
    14: "CREATE INDEX runs_by_key ON runs(key, queued_at)",
    15: f"CREATE INDEX runs_by_key ON runs(key, queued_at, state) WHERE {ENDED}",
    16: f"CREATE INDEX runs_by_key ON runs(key, queued_at) WHERE {ENDED}",
}
#: PostgreSQL's of 16, which held each run's id beside its key and queue time
PG_INDEX_OF_16 = f"CREATE INDEX runs_by_key ON runs(key, queued_at, id) WHERE {ENDED}"


def downgrade(where: str, version: int) -> None:
    """The registry as ``version`` (14, 15 or 16) left it: its index of runs by key as that version made it, and on
    PostgreSQL no column of the order the runs were written (dropped with the index that holds it)."""
    if where.startswith("postgresql:"):
        with psycopg.connect(where, autocommit=True) as pg:
            pg.execute("ALTER TABLE runs DROP COLUMN written")
            pg.execute("DROP INDEX IF EXISTS runs_by_key")
            pg.execute(PG_INDEX_OF_16 if version == 16 else INDEX_OF_VERSION[version])
            pg.execute("UPDATE nectar_schema SET version = %s", (version - FIRST_VERSION + 1,))
        return
    with sqlite3.connect(where) as lite:
        lite.execute("DROP INDEX runs_by_key")
        lite.execute(INDEX_OF_VERSION[version])
        lite.execute(f"PRAGMA user_version = {version}")
    lite.close()


def index_made(where: str) -> str:
    """The statement that made ``runs_by_key``, as the database tells it."""
    if where.startswith("postgresql:"):
        with psycopg.connect(where) as pg:
            row = pg.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'runs_by_key'").fetchone()
            (version,) = pg.execute("SELECT version FROM nectar_schema").fetchone() or (None,)
        assert version == PG_VERSION
        return str(row[0]) if row else ""
    with sqlite3.connect(where) as lite:
        (made,) = lite.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_by_key'").fetchone()
        assert lite.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    lite.close()
    return str(made)


def every_state(runs: SqlTriggers) -> tuple[list[Run], dict[str, str]]:
    """Runs queued, running, waiting, queued again for a retry, done, failed and cancelled (in ``made``'s order), a
    key with ended runs and an active one queued before them, and a key with two ended runs queued at the same clock
    reading, the one made last cancelled (version 15's index put the done one first); and each key's latest run."""
    retried = RetryPolicy(retries=1, delay=0.0)
    made = [runs.submit(run_of(n, 1000.0 + n, retried))[0] for n in range(7)]
    for n in range(1, 7):
        assert runs.claim("w", run_id=made[n].id) is not None
    assert runs.wait(made[2].id, 1, ["s3://b/in"], until=9e9, next_check=9e9, reason="absent")
    assert runs.fail(made[3].id, 1, "ATask", "boom") == RunState.PENDING  # its retry, queued again
    assert runs.complete(made[4].id, 1)
    assert runs.fail(made[5].id, 1, "ATask", "boom", retryable=False) == RunState.FAILED
    runs.cancel(made[6].id)
    again = runs.submit(run_of(6, 500.0))[0]  # a key with ended runs and an active one, queued before them
    later = runs.submit(run_of(5, 3000.0))[0]
    runs.cancel(later.id)
    both = [run_of(7, 2000.0) for _ in range(2)]
    tied = [dataclasses.replace(run, id=time_ordered_id(2000.0)) for run in both]  # made one after the other
    for run, state in zip(tied, (RunState.DONE, RunState.CANCELLED), strict=True):
        assert runs.submit(run)[0].id == run.id
        end(runs, run, state)
    states = [known(runs.get(run.id)).state for run in made]
    assert states == ["PENDING", "RUNNING", "WAITING", "PENDING", "DONE", "FAILED", "CANCELLED"]
    expected = {run.key: run.id for run in made[:5]} | {made[5].key: later.id, made[6].key: again.id}
    expected[tied[0].key] = tied[1].id
    return made, expected


def written_after_the_upgrade(upgraded: SqlTriggers, made: list[Run], expected: dict[str, str]) -> None:
    """After an upgrade: each key's latest as before; an active run queued before its key's ended runs, once ended,
    still its latest (written after them); a submission of a key active finds its run, and one of a key whose runs
    ended is its latest, queued at a clock reading before every run's (a clock stepped back)."""
    assert {key: latest_id(upgraded, key) for key in expected} == expected
    again = expected[made[6].key]
    upgraded.cancel(again)
    assert latest_id(upgraded, made[6].key) == again
    assert upgraded.submit(run_of(1, 4000.0)) == (upgraded.get(made[1].id), False)
    queued = upgraded.submit(run_of(4, 100.0))[0]
    assert queued.id != made[4].id and latest_id(upgraded, made[4].key) == queued.id
    upgraded.cancel(queued.id)
    assert latest_id(upgraded, made[4].key) == queued.id


def index_of_17(where: str) -> str:
    """The columns of version 17's ``runs_by_key`` as the database spells them."""
    return "(key, written) INCLUDE (id)" if where.startswith("postgresql:") else "(key)"  # and SQLite's rowid


@pytest.mark.parametrize("version", [14, 15, 16])
def test_a_registry_of_schema_14_to_16_with_runs_in_every_state_keeps_each_key_s_latest_as_it_upgrades(
    where: str, version: int
) -> None:
    """Runs in every state (:func:`every_state`), upgraded from schema 14, 15 or 16 in one transaction: each key's
    latest run is as before, its active run, else its ended run queued last, of those queued at once the one written
    (SQLite) or made (PostgreSQL) last; its index of runs by key now holds ended runs only, in the order they were
    written (PostgreSQL: the runs written before numbered in that order, each active run after every ended one); and
    the runs written after the upgrade are written after every run written before (:func:`written_after_the_upgrade`).
    """
    runs = open_store(where)
    made, expected = every_state(runs)
    runs.close()
    downgrade(where, version)

    upgraded = open_store(where)

    made_so = index_made(where)
    assert f"{index_of_17(where)} WHERE" in made_so and all(f"'{state}'" in made_so for state in ENDED_STATES), made_so
    if not where.startswith("postgresql:"):
        assert ended_entries(where) == 6  # done, failed, two cancelled, and the two queued at once
    written_after_the_upgrade(upgraded, made, expected)


def upgrade_in_a_child(where: str, go: tuple[int, int]) -> int:
    """Fork a process that opens the registry at ``where`` (and so upgrades it) once the pipe ``go`` (its ends) is
    closed by every other process; its pid. It exits 0 once it has, 1 on any error."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.close(go[1])
        os.read(go[0], 1)
        opened = PostgresRunStore(where) if where.startswith("postgresql:") else SQLiteRunStore(Path(where))
        opened.count()
        opened.close()
        code = 0
    finally:
        os._exit(code)


def test_two_processes_upgrading_a_registry_of_schema_16_at_once_upgrade_it_once(where: str) -> None:
    """Two processes open a registry of schema 16 (runs in every state, :func:`every_state`) at the same moment: one
    upgrades it, in one transaction, the other finds it upgraded (PostgreSQL: each run numbered once, in order); both
    open it, and it answers as :func:`written_after_the_upgrade` says."""
    runs = open_store(where)
    made, expected = every_state(runs)
    runs.close()
    downgrade(where, 16)
    go = os.pipe()
    try:
        pids = [upgrade_in_a_child(where, go) for _ in range(2)]
    finally:
        for end_of_pipe in go:  # the children see its end at once
            os.close(end_of_pipe)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0]

    upgraded = open_store(where)

    assert f"{index_of_17(where)} WHERE" in index_made(where)
    if where.startswith("postgresql:"):
        with psycopg.connect(where) as pg:
            row = pg.execute("SELECT COUNT(*), COUNT(DISTINCT written), MIN(written), MAX(written) FROM runs")
            assert row.fetchone() == (len(made) + 4, len(made) + 4, 1, len(made) + 4)
    written_after_the_upgrade(upgraded, made, expected)


def id_made_in_a_child(now: float) -> str:
    """A run id made at ``now`` in a process forked from this one, as another API process makes it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its id, then gone
        try:
            os.write(write, time_ordered_id(now).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        made = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return made


def two_processes_ids(now: float) -> tuple[str, str]:
    """The ids of two processes' runs made at ``now``, the first made by the first process, where the first is the
    greater (what two processes' ids of one millisecond are about half the time: each draws its random bits alone)."""
    for _ in range(64):
        first, last = id_made_in_a_child(now), id_made_in_a_child(now)
        if first > last:
            return first, last
    raise AssertionError("64 pairs of ids, the first never the greater")


def test_of_two_runs_queued_at_one_reading_by_two_processes_the_latest_is_the_one_written_last(where: str) -> None:
    """review7 (round 53): a key's run queued and cancelled by one API process, then queued again by another at the
    same clock reading (a clock that did not move between the two) and cancelled: the run written last is the key's
    latest. Schema 16's PostgreSQL registry broke such a tie by the greater id, and two processes' ids of one
    millisecond are in no order: it took the first run."""
    runs = open_store(where)
    key = run_of(1, READING).key
    first_id, last_id = two_processes_ids(READING)
    for made_id in (first_id, last_id):
        run = runs.submit(dataclasses.replace(run_of(1, READING), id=made_id))[0]
        assert run.id == made_id
        runs.cancel(run.id)
    found, status = runs.latest(key), runs.latest_status(key)[0]
    assert found is not None and status is not None
    assert found.state == RunState.CANCELLED
    assert (found.id, status.id) == (last_id, last_id), "the run written last is the key's latest"


def test_a_run_queued_after_the_wall_clock_stepped_back_is_its_key_s_latest(where: str) -> None:
    """review7 (round 53): a key's run queued and cancelled, the wall clock then stepped back a second (NTP, a resumed
    VM), the key queued again and done: the run written last is the key's latest (what its status says: DONE), not
    the cancelled one queued at the later reading. Schemas 15 and 16 ordered a key's ended runs by ``queued_at``
    first."""
    runs = open_store(where)
    key = run_of(1, READING).key
    first = runs.submit(dataclasses.replace(run_of(1, READING), id=time_ordered_id(READING)))[0]
    runs.cancel(first.id)
    stepped = READING - 1.0
    last = runs.submit(dataclasses.replace(run_of(1, stepped), id=time_ordered_id(stepped)))[0]
    assert last.id != first.id and runs.claim("w", run_id=last.id) is not None
    assert runs.complete(last.id, 1)
    found, status = runs.latest(key), runs.latest_status(key)[0]
    assert found is not None and status is not None
    assert (found.id, status.id, found.state) == (last.id, last.id, RunState.DONE)


def test_a_listing_puts_runs_of_one_queue_time_the_one_written_last_first(where: str) -> None:
    """Runs are listed newest first by their queue time (what a user reads beside each), and of runs queued at one
    clock reading, the one written last first, as a key's latest is taken: schema 16 listed such ties by id,
    ascending, the run made first first."""
    runs = open_store(where)
    ids = sorted(time_ordered_id(READING) for _ in range(3))  # made and written in the order of their ids
    tied = [dataclasses.replace(run_of(n, READING), id=made_id) for n, made_id in enumerate(ids)]
    before, after = run_of(3, READING - 1.0), run_of(4, READING + 1.0)
    for run in (tied[0], before, tied[1], after, tied[2]):
        runs.submit(run)
    expected = [after.id, *(run.id for run in reversed(tied)), before.id]
    assert [run.id for run in runs.find(RunFilter())[0]] == expected
    assert [run.id for run in runs.find(RunFilter(task="ATask"))[0]] == expected
    assert [run.id for run in runs.find(RunFilter(state=RunState.PENDING), offset=1, limit=3)[0]] == expected[1:4]


def test_runs_imported_are_written_in_the_order_given(where: str) -> None:
    """A bulk load (``import_runs``: a restore, a benchmark's population) writes its runs as they are, in the order
    given, after every run written before: a key's latest is the run given last, whatever the queue times, and a run
    submitted after the load is written after it."""
    runs = open_store(where)
    done = dataclasses.replace(run_of(1, READING), state=RunState.DONE, finished_at=READING + 1.0)
    cancelled = dataclasses.replace(run_of(1, READING - 100.0), state=RunState.CANCELLED, finished_at=READING)
    runs.import_runs([done, cancelled])
    assert latest_id(runs, done.key) == cancelled.id
    runs.import_runs([dataclasses.replace(run_of(1, READING - 200.0), state=RunState.FAILED)])
    failed = latest_id(runs, done.key)
    assert failed not in (done.id, cancelled.id, None)
    submitted = runs.submit(run_of(1, READING - 300.0))[0]
    runs.cancel(submitted.id)
    assert latest_id(runs, done.key) == submitted.id
