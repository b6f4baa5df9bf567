"""The run registry: one active run per key, atomic claims, requeue and finish, steps."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from nectar.runs import Run, RunState, SQLiteRunStore, Step, jsonable_run

DIGEST = "0123456789abcdef0123456789abcdef"


def new_run(n: int = 0) -> Run:
    return Run.new(f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {"n": str(n)}, f"ATask_{n}")


@pytest.fixture
def runs(tmp_path: Path) -> SQLiteRunStore:
    return SQLiteRunStore(tmp_path / "data" / "runs.sqlite3")


def test_one_active_run_per_key(runs: SQLiteRunStore) -> None:
    first, created = runs.submit(new_run())
    again, created_again = runs.submit(new_run())
    assert (created, created_again) == (True, False)
    assert again == first and again.state == RunState.PENDING

    claimed = runs.claim("w1")
    assert claimed is not None and (claimed.id, claimed.state, claimed.worker) == (first.id, RunState.RUNNING, "w1")
    running, created_while_running = runs.submit(new_run())
    assert (running.id, running.state, created_while_running) == (first.id, RunState.RUNNING, False)

    runs.finish(first.id, RunState.FAILED, failed_step="ATask", error="boom")
    second, created_after = runs.submit(new_run())
    assert created_after and second.id != first.id
    assert runs.latest(first.key) == second
    assert runs.count() == 2 and runs.count(RunState.FAILED) == 1 and runs.count(RunState.PENDING) == 1


def test_claims_are_atomic_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    submitted = [SQLiteRunStore(path).submit(new_run(n))[0].id for n in range(40)]
    claimed: list[str] = []
    start = threading.Barrier(12)

    def worker(name: str) -> None:
        store = SQLiteRunStore(path)  # each worker its own store and connection, like separate processes
        start.wait()
        while (run := store.claim(name)) is not None:
            assert run.state == RunState.RUNNING and run.worker == name
            claimed.append(run.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(claimed) == Counter(submitted)  # every run claimed, none twice
    assert SQLiteRunStore(path).count(RunState.RUNNING) == 40


def test_claims_go_oldest_first_and_by_id(runs: SQLiteRunStore) -> None:
    old, middle, young = (runs.submit(new_run(n))[0] for n in range(3))
    chosen = runs.claim("w", run_id=young.id)
    assert chosen is not None and (chosen.id, chosen.state) == (young.id, RunState.RUNNING)
    assert runs.claim("w", run_id=young.id) is None  # already running
    order = [runs.claim("w"), runs.claim("w"), runs.claim("w")]
    assert [run.id if run else None for run in order] == [old.id, middle.id, None]


def test_requeue_puts_a_running_run_back(runs: SQLiteRunStore) -> None:
    run = runs.submit(new_run())[0]
    runs.requeue(run.id)  # not running: nothing happens
    assert runs.get(run.id) == run

    assert runs.claim("w1") is not None
    runs.requeue(run.id)
    back = runs.get(run.id)
    assert back is not None and (back.state, back.worker, back.started_at) == (RunState.PENDING, None, None)
    again = runs.claim("w2")
    assert again is not None and (again.id, again.worker) == (run.id, "w2")


def test_finish_records_the_end_once(runs: SQLiteRunStore) -> None:
    run = runs.submit(new_run())[0]
    runs.claim("w")
    runs.finish(run.id, RunState.FAILED, failed_step="BTask", error="ValueError: no")
    runs.finish(run.id, RunState.DONE)  # too late: the first end stands

    ended = runs.get(run.id)
    assert ended is not None
    assert (ended.state, ended.failed_step, ended.error) == (RunState.FAILED, "BTask", "ValueError: no")
    assert ended.finished_at is not None and ended.started_at is not None
    assert ended.finished_at >= ended.started_at >= ended.queued_at
    assert jsonable_run(ended)["state"] == "FAILED" and jsonable_run(ended)["task"] == "t/c_chain/ATask"


def test_steps_keep_their_order_and_remember_they_ran(runs: SQLiteRunStore) -> None:
    run = runs.submit(new_run())[0]
    runs.record_step(Step(run.id, "B_1", "BTask", None, "PENDING"))
    runs.record_step(Step(run.id, "A_1", "ATask", None, "PENDING"))
    runs.record_step(Step(run.id, "A_1", "ATask", None, "RUNNING", executed=True))
    runs.record_step(Step(run.id, "A_1", "ATask", None, "FAILED", error="boom"))
    runs.record_step(Step(run.id, "B_1", "BTask", None, "DONE"))

    steps = runs.steps(run.id)
    assert [(s.task, s.state, s.executed, s.error) for s in steps] == [
        ("BTask", "DONE", False, None),
        ("ATask", "FAILED", True, "boom"),
    ]
    assert runs.steps("no-such-run") == []


def test_registry_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    run = SQLiteRunStore(path).submit(new_run())[0]
    reopened = SQLiteRunStore(path)
    assert reopened.get(run.id) == run and reopened.check() == f"sqlite {path}"
    assert reopened.get("missing") is None and reopened.latest("chains/none") is None
