"""The PostgreSQL registry's own behaviour on a real server: its schema version, racing inserts, waking workers."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import psycopg
import pytest

from harness import waitfor
from nectar.config import Settings
from nectar.registry import Run, RunState, Step, open_run_store
from nectar.registry.postgres import SCHEMA_VERSION, PostgresRunStore
from nectar.registry.schedules import FireOutcome
from nectar.registry.triggers import Seen
from nectar.schedules.model import ScheduleRecord, ScheduleSpec
from nectar.triggers.model import TriggerRecord, TriggerSpec
from tests.helpers.registries import known

DIGEST = "0123456789abcdef0123456789abcdef"
SCHEDULE = ScheduleSpec.from_definition({"task": "t/c_chain/ATask", "interval_s": 60})
WATCH = TriggerSpec.from_definition({"task": "t/c_chain/ATask", "prefix": "s3://bucket/in/", "param": "n"})


def new_run(n: int = 0) -> Run:
    return Run.new(f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {}, f"ATask_{n}")


def test_the_schema_is_created_once_and_versioned(database_url: str) -> None:
    stores = [PostgresRunStore(database_url) for _ in range(3)]  # several processes starting at once upgrade once

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT version FROM nectar_schema").fetchall() == [(SCHEMA_VERSION,)]
    assert stores[0].check().startswith("postgresql 127.0.0.1:")


def test_identical_submissions_racing_make_one_run(database_url: str) -> None:
    stores = [PostgresRunStore(database_url) for _ in range(16)]
    barrier = threading.Barrier(len(stores))

    def submit(store: PostgresRunStore) -> tuple[str, bool]:
        barrier.wait()
        run, created = store.submit(new_run())
        return run.id, created

    with ThreadPoolExecutor(len(stores)) as pool:
        answers = list(pool.map(submit, stores))

    assert len({run_id for run_id, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert stores[0].count() == 1


def test_a_queued_run_wakes_a_waiting_worker(database_url: str) -> None:
    """The NOTIFY of a submission ends the wait: without it the waiter would sleep out its hour."""
    worker, api = PostgresRunStore(database_url), PostgresRunStore(database_url)
    worker.wait_for_work(0.01)  # listening from now on: a NOTIFY sent before the wait below is kept for it
    woken = threading.Event()

    def wait() -> None:
        worker.wait_for_work(3600)
        woken.set()

    threading.Thread(target=wait, daemon=True).start()
    api.submit(new_run())

    assert woken.wait(timeout=60), "the submission's NOTIFY never woke the worker waiting for work"
    claimed = worker.claim("w")
    assert claimed is not None and claimed.state == RunState.RUNNING


def test_the_settings_choose_postgresql_when_a_database_url_is_set(database_url: str, settings: Settings) -> None:
    store = open_run_store(settings.replace(database_url=database_url))
    assert isinstance(store, PostgresRunStore)
    assert settings.replace(database_url="postgresql://nectar:secret@db:5432/runs").registry_location == (
        "postgresql://db:5432/runs"
    )


def test_an_older_release_refuses_a_newer_schema(database_url: str) -> None:
    PostgresRunStore(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE nectar_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this release"):
        PostgresRunStore(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT version FROM nectar_schema").fetchall() == [(SCHEMA_VERSION + 1,)]


def test_a_process_holds_at_most_its_pool_of_connections(database_url: str) -> None:
    """Eight threads reading at once share the pool's two connections (one connection per thread would be eight).

    One watcher connection, opened before the store's pool, counts every other backend of the database while
    they read: a connection opened to count would itself be counted while it starts (PostgreSQL lists a starting
    backend before its ``application_name`` is set), which once made a pool of 2 look like 3; and only client backends
    are counted: an autovacuum worker of the test's fresh database is listed with its name too (a clean clone's CI read
    3 on a quiet machine, round 68)."""
    store = PostgresRunStore(database_url, pool_size=2)
    with psycopg.connect(database_url, autocommit=True) as watcher:

        def others() -> int:
            query = (
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"  # not an autovacuum worker the server starts on the database
            )
            row = watcher.execute(query).fetchone()
            assert row is not None
            return int(row[0])

        waitfor(lambda: others() == 0, 60, "the backend of the store's migration connection to exit")
        store.submit(new_run())  # the pool opens here
        barrier, watched = threading.Barrier(9), threading.Event()

        def read(_: int) -> int:
            barrier.wait(timeout=60)
            while not watched.is_set():
                assert store.count() == 1
            return store.count()

        with ThreadPoolExecutor(8) as pool:
            reads = pool.map(read, range(8))
            try:
                barrier.wait(timeout=60)
                seen = [others() for _ in range(200)]
            finally:
                watched.set()
            assert list(reads) == [1] * 8
    assert max(seen) <= 2, f"the store held {max(seen)} connections, more than its pool of 2"


def test_a_forked_child_opens_its_own_pool_and_leaves_its_parents_alone(database_url: str) -> None:
    """Parent and child query at once: had the child used the parent's connections, their answers would mix."""
    store = PostgresRunStore(database_url, pool_size=1)
    store.submit(new_run())
    assert store.count() == 1  # the parent's pool is open, its one connection in it
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.read(go_read, 1)
            code = 0 if all(store.count() == 1 and store.get("nope") is None for _ in range(200)) else 3
        finally:
            os._exit(code)
    os.write(go_write, b"x")
    answers = [store.count() == 1 and store.latest(new_run().key) is not None for _ in range(200)]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's reads failed, answered wrong, or it was killed"
    assert all(answers), "the parent's reads answered wrong while its child read"
    assert store.count() == 1 and store.check().startswith("postgresql ")


def test_the_listening_connection_is_not_taken_from_the_pool(database_url: str) -> None:
    """A worker waiting for a NOTIFY still reads and claims through its pool of one connection."""
    worker, api = PostgresRunStore(database_url, pool_size=1), PostgresRunStore(database_url)
    listening = threading.Event()
    woken = threading.Event()

    def wait() -> None:
        listening.set()
        worker.wait_for_work(3600)
        woken.set()

    threading.Thread(target=wait, daemon=True).start()
    assert listening.wait(timeout=60)
    assert worker.count() == 0  # the pool's one connection is free while the listener waits
    api.submit(new_run())
    assert woken.wait(timeout=60), "the submission's NOTIFY never woke the worker waiting for work"
    claimed = worker.claim("w")
    assert claimed is not None and claimed.state == RunState.RUNNING


def test_the_pool_size_comes_from_the_settings(database_url: str, settings: Settings) -> None:
    store = open_run_store(settings.replace(database_url=database_url, database_pool="3"))
    assert isinstance(store, PostgresRunStore) and store.pool_size == 3
    with pytest.raises(ValueError, match="NECTAR_DATABASE_POOL must be a whole number of at least 1, not 0"):
        settings.replace(database_pool=0)


def test_a_database_of_the_first_postgresql_schema_upgrades_itself(database_url: str) -> None:
    """Version 1 as the first release on PostgreSQL wrote it (no waiting_since) becomes this release's version."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, key TEXT NOT NULL, chain_type TEXT NOT NULL, chain TEXT NOT NULL,"
            " task TEXT NOT NULL, params TEXT NOT NULL, task_id TEXT NOT NULL, state TEXT NOT NULL,"
            " queued_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,"
            " worker TEXT, failed_step TEXT, error TEXT, attempt INTEGER NOT NULL DEFAULT 0,"
            " max_attempts INTEGER NOT NULL DEFAULT 1, retry_delay DOUBLE PRECISION NOT NULL DEFAULT 0,"
            " retry_backoff DOUBLE PRECISION NOT NULL DEFAULT 2, not_before DOUBLE PRECISION NOT NULL DEFAULT 0,"
            " heartbeat_at DOUBLE PRECISION)"
        )
        conn.execute("CREATE UNIQUE INDEX runs_one_active_per_key ON runs(key) WHERE state IN ('PENDING', 'RUNNING')")
        conn.execute(
            "CREATE TABLE steps (run_id TEXT NOT NULL, task_id TEXT NOT NULL, task TEXT NOT NULL, key TEXT,"
            " state TEXT NOT NULL, executed INTEGER NOT NULL DEFAULT 0, error TEXT,"
            " updated_at DOUBLE PRECISION NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (run_id, task_id))"
        )
        conn.execute("CREATE TABLE nectar_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO nectar_schema VALUES (1)")
        conn.execute(
            "INSERT INTO runs (id, key, chain_type, chain, task, params, task_id, state, queued_at)"
            " VALUES ('r1', 'k', 't', 'c_chain', 'ATask', '{}', 'ATask_1', 'PENDING', 1.0)"
        )

    store = PostgresRunStore(database_url)

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT version FROM nectar_schema").fetchall() == [(SCHEMA_VERSION,)]
    claimed = store.claim("w")
    assert claimed is not None and claimed.id == "r1" and claimed.waiting_since is None
    assert store.requeue("r1", claimed.attempt, waiting=True)
    assert known(store.get("r1")).waiting_since is not None


@pytest.mark.parametrize("maker", ["schedule", "trigger"])
def test_a_fire_racing_a_submission_of_its_key_joins_that_run(database_url: str, maker: str) -> None:
    """A schedule's fire (or a trigger's claim) whose key a client's transaction is inserting at that moment joins
    the client's run once it commits: the one-active-run index decides in one statement, not a look (which saw no
    run yet) then an insert that failed on the index (a trigger's claim raised UniqueViolation)."""
    client, scheduler = PostgresRunStore(database_url), PostgresRunStore(database_url)
    assert scheduler.add_schedule(ScheduleRecord("s1", "api", SCHEDULE, 1, False, 0.0, 0.0, 0.0))
    assert scheduler.add_trigger(TriggerRecord("t1", "api", WATCH, 1, False, "", 0.0, 0.0))
    submitted, fired = new_run(), replace(new_run(), schedule_id="s1", fire_time=100.0)
    inserted, release = threading.Event(), threading.Event()

    def submit() -> None:  # a client's submission, held between its insert and its commit
        with client._db() as db:
            client._queue_unless_active(db, submitted)
            inserted.set()
            release.wait(timeout=600)

    def fire() -> str | None:
        if maker == "schedule":
            assert scheduler.fire("s1", 1, 100.0, FireOutcome(run=fired), now=100.5) == "queued"
            return scheduler.fires("s1")[0].run_id
        return scheduler.claim_objects("t1", 1, [Seen("in/a", "v1")], lambda fresh: FireOutcome(run=fired), 1.0).run_id

    def waiting_on_a_lock() -> bool:
        with psycopg.connect(database_url, autocommit=True) as pg:
            row = pg.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
        return row is not None and row[0] > 0

    with ThreadPoolExecutor(2) as pool:
        holding = pool.submit(submit)
        assert inserted.wait(timeout=600)
        firing = pool.submit(fire)
        try:
            waitfor(waiting_on_a_lock, 600, "the fire to wait on the client's uncommitted run")
        finally:
            release.set()
        holding.result()
        assert firing.result() == submitted.id
    joined = scheduler.get(submitted.id)
    assert joined is not None and scheduler.count() == 1
    assert (joined.schedule_id, joined.trigger_id) == (("s1", None) if maker == "schedule" else (None, "t1"))


#: another transaction ending a run as a reclaim or a cancel does, its change not yet committed
ENDINGS = {
    "reclaim": "UPDATE runs SET state = 'PENDING', heartbeat_at = NULL WHERE id = %s",
    "cancel": "UPDATE runs SET state = 'CANCELLED', heartbeat_at = NULL WHERE id = %s",
}


@pytest.mark.parametrize(
    ("ending", "attempt"), [("reclaim", 1), ("cancel", 1), ("cancel", None)], ids=["reclaim", "cancel", "unfenced"]
)
def test_a_step_write_racing_the_end_of_its_run_waits_for_it_and_is_refused(
    database_url: str, ending: str, attempt: int | None
) -> None:
    """The check of a step write (does its attempt still own its run? is the run not cancelled?) and the write agree:
    a reclaim or a cancel of the run in progress in another transaction (the run's row changed, not yet committed)
    makes the write wait, then write nothing; under READ COMMITTED a check that takes no lock reads the run as it was
    and writes the step."""
    store = PostgresRunStore(database_url)
    run, _ = store.submit(new_run())
    assert store.claim("w1") is not None
    step = Step(run.id, "A_1", "ATask", None, "RUNNING", executed=True)
    written: list[bool] = []
    with psycopg.connect(database_url) as ender, psycopg.connect(database_url, autocommit=True) as watcher:
        ender.execute(ENDINGS[ending], (run.id,))  # its transaction stays open
        writer = threading.Thread(target=lambda: written.append(store.record_steps([step], attempt)))
        writer.start()
        waitfor(lambda: written or waits_for_a_lock(watcher), 60, "the step write to end or to wait for the run")
        ender.commit()
        writer.join(60)
    assert written == [attempt is None]  # an unfenced write says nothing of its run
    assert store.steps(run.id) == []


def waits_for_a_lock(watcher: psycopg.Connection) -> bool:
    """Whether a session of the database waits for a lock another holds."""
    row = watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return row is not None and row[0] > 0


def test_a_closed_store_gives_its_sessions_back_and_opens_them_again_when_used(database_url: str) -> None:
    """``close`` ends this process's sessions (its pool's and its LISTEN connection), as ``Nectar.close`` and a
    stopped executor expect of any registry; the store still works after it, with sessions opened anew."""

    def sessions() -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchone()
            assert row is not None
            return int(row[0])

    before = sessions()
    store = PostgresRunStore(database_url)
    store.submit(new_run(1))
    store.wait_for_work(0.01)  # its LISTEN connection too
    assert sessions() >= before + 2
    store.close()
    waitfor(lambda: sessions() == before, 60, "the closed store's sessions to end")
    assert store.count() == 1
    store.close()
