"""The PostgreSQL registry's own behaviour on a real server: its schema version, racing inserts, waking workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from nectar.config import Settings
from nectar.pgruns import SCHEMA_VERSION, PostgresRunStore
from nectar.runs import Run, RunState, open_run_store

DIGEST = "0123456789abcdef0123456789abcdef"


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
