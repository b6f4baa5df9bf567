"""The run registry: one active run per key, atomic claims, attempts and retries, leases, cancel, queue bound."""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import nectar.registry.model
import nectar.registry.sql
from nectar.errors import QueueFull, RunFinished, RunNotFound
from nectar.leases import release
from nectar.outcomes import end_running_steps
from nectar.registry import RetryPolicy, Run, RunFilter, RunState, Step, jsonable_run
from nectar.registry.postgres import PostgresRunStore
from nectar.registry.schema import MIGRATIONS, RUN_COLUMNS, RUNS, STEP_COLUMNS, param_marks, run_row
from nectar.registry.sql import SqlRunStore
from nectar.registry.sqlite import OWN_STATEMENTS, SCHEMA_VERSION, SQLiteRunStore
from tests.clock import Clock
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_runs import DIGEST, new_run

#: new_run: made in tests/helpers (a child process of a test imports it from there, not with pytest and this module)
__all__ = ["DIGEST", "new_run"]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SqlRunStore]:
    """Opens (again) one registry: a SQLite file, or a real PostgreSQL database; each test runs against both."""
    if request.param == "postgres":
        url = request.getfixturevalue("database_url")
        return lambda: closed_at_end(PostgresRunStore(url))
    return lambda: closed_at_end(SQLiteRunStore(tmp_path / "data" / "runs.sqlite3"))


@pytest.fixture
def runs(open_store: Callable[[], SqlRunStore]) -> SqlRunStore:
    return open_store()


def up_for_longer_than(runs: SqlRunStore, seconds: float) -> None:
    """Wait until the registry has been up for longer than ``seconds``: no lease runs out sooner (PostgreSQL's start
    is counted in its own clock, which a test's clock does not move; SQLite has none)."""
    wait_until(lambda: runs._read(runs._up_for) > seconds)


def test_one_active_run_per_key(runs: SqlRunStore) -> None:
    first, created = runs.submit(new_run())
    again, created_again = runs.submit(new_run())
    assert (created, created_again) == (True, False)
    assert again == first and again.state == RunState.PENDING

    claimed = runs.claim("w1")
    assert claimed is not None and (claimed.id, claimed.state, claimed.worker) == (first.id, RunState.RUNNING, "w1")
    running, created_while_running = runs.submit(new_run())
    assert (running.id, running.state, created_while_running) == (first.id, RunState.RUNNING, False)

    assert runs.fail(first.id, 1, "ATask", "boom") == RunState.FAILED
    second, created_after = runs.submit(new_run())
    assert created_after and second.id != first.id
    assert runs.latest(first.key) == second
    assert runs.count() == 2 and runs.count(RunState.FAILED) == 1 and runs.count(RunState.PENDING) == 1


def test_a_new_run_is_one_statement_and_the_queue_count_one_more(
    runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index of one active run per key answers whether an identical run is active: a new run is inserted
    without a look first (the look is made when the insert finds one), and the queue's count read after it (in
    SQLite, read by the insert itself: tests/nectar/test_combine.py)."""
    said: list[str] = []
    execute = runs._exec

    def counted(db: object, text: str, args: tuple = ()) -> object:
        said.append(text.split(" ", 1)[0])
        return execute(db, text, args)

    monkeypatch.setattr(runs, "_exec", counted)
    first, created = runs.submit(new_run(), max_pending=10)
    counted_apart = ["SELECT"] if isinstance(runs, PostgresRunStore) else []
    assert created and said == ["INSERT", *counted_apart]  # the run, then the queue's count
    said.clear()
    again, created_again = runs.submit(new_run(), max_pending=10)
    assert not created_again and again == first and said == ["INSERT", "SELECT"]  # refused by the index, then found
    assert runs.count(RunState.PENDING) == 1


def test_claims_are_atomic_across_threads(open_store: Callable[[], SqlRunStore]) -> None:
    submitted = [open_store().submit(new_run(n))[0].id for n in range(40)]
    claimed: list[str] = []
    start = threading.Barrier(12)

    def worker(name: str) -> None:
        store = open_store()  # each worker its own store and connection, like separate processes
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
    assert open_store().count(RunState.RUNNING) == 40


def test_claims_go_oldest_first_and_by_id(runs: SqlRunStore) -> None:
    old, middle, young = (runs.submit(new_run(n))[0] for n in range(3))
    chosen = runs.claim("w", run_id=young.id)
    assert chosen is not None and (chosen.id, chosen.state) == (young.id, RunState.RUNNING)
    assert runs.claim("w", run_id=young.id) is None  # already running
    order = [runs.claim("w"), runs.claim("w"), runs.claim("w")]
    assert [run.id if run else None for run in order] == [old.id, middle.id, None]


def test_a_run_queued_later_has_a_greater_id_of_the_same_shape(
    runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new run's id is a UUIDv7 in 32 lowercase hex digits (uuid4's ``hex`` shape, as ids made before): its first
    48 bits are the milliseconds of its queue time, so the index of ids takes each new one at its end."""
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.model)
    made = []
    for n in range(20):
        made.append(runs.submit(new_run(n))[0])
        clock.advance(0.001 * (1 + n % 3))
    ids = [run.id for run in made]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for run in made:
        assert re.fullmatch("[0-9a-f]{32}", run.id) and uuid.UUID(run.id).version == 7
        assert int(run.id[:12], 16) == int(run.queued_at * 1000)
        assert runs.get(run.id) == run
    assert [run.id for run in runs.find(RunFilter(), limit=20)[0]] == ids[::-1]  # newest first


def test_a_new_run_is_the_one_its_class_makes_of_the_same_values() -> None:
    """Run.new sets a run's fields at once, not through the frozen dataclass's __init__: the same run, every field
    in its place, still frozen."""
    run = Run.new("k", "t", "c_chain", "ATask", {"n": "1"}, "ATask_1", RetryPolicy(2, 1.5, 3.0), "s", 9.0, "tr", ("o",))
    made = Run(run.id, "k", "t", "c_chain", "ATask", {"n": "1"}, "ATask_1", queued_at=run.queued_at, max_attempts=3)
    made = dataclasses.replace(made, retry_delay=1.5, retry_backoff=3.0, schedule_id="s", fire_time=9.0)
    made = dataclasses.replace(made, trigger_id="tr", objects=("o",))
    assert run == made and list(vars(run)) == list(vars(made)) and repr(run) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.state = RunState.DONE  # type: ignore[misc]


def test_requeue_puts_a_running_attempt_back_uncounted(runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.sql)
    run = runs.submit(new_run())[0]
    assert not runs.requeue(run.id, 0)  # not running: nothing happens
    assert runs.get(run.id) == run

    first = runs.claim("w1")
    assert first is not None and first.attempt == 1
    assert runs.requeue(first.id, 1, delay=30, reason="luigid unreachable")
    back = runs.get(run.id)
    assert back is not None and (back.state, back.attempt, back.error) == (RunState.PENDING, 0, "luigid unreachable")
    assert back.not_before == clock.time() + 30
    clock.advance(29.5)
    assert runs.claim("w2") is None  # not before its delay
    clock.advance(0.5)
    again = runs.claim("w2")
    assert again is not None and (again.id, again.worker, again.attempt) == (run.id, "w2", 1)


def test_requeue_unbegun_puts_back_uncounted_only_what_runs_in_that_exact_name(runs: SqlRunStore) -> None:
    """A spare whose worker died asks for what was claimed in its name (``host:pid``, ``host:pid.n`` for its n-th
    run): those runs go back to the queue, their attempt uncounted; a run held in another name (the same process's
    earlier run, another process), or no longer RUNNING, is left as it is."""
    for n in range(3):
        runs.submit(new_run(n))
    mine, earlier, other = (runs.claim(name) for name in ("h:7.2", "h:7", "h:71"))
    assert mine is not None and earlier is not None and other is not None
    assert runs.complete(earlier.id, 1)  # the same process's first run, ended

    assert runs.requeue_unbegun("h:7") == []  # its earlier run ended: nothing RUNNING in that name
    assert runs.requeue_unbegun("h:7.2") == [mine.id]
    back = runs.get(mine.id)
    assert back is not None and (back.state, back.attempt, back.error) == (RunState.PENDING, 0, None)
    assert runs.attempts(mine.id) == []
    assert runs.requeue_unbegun("h:7.2") == []  # asked again: nothing left
    still = runs.get(other.id)
    assert still is not None and (still.state, still.attempt, still.worker) == (RunState.RUNNING, 1, "h:71")
    again = runs.claim("h:9", run_id=mine.id)
    assert again is not None and again.attempt == 1  # its first attempt still


def test_next_due_says_in_one_read_whether_a_run_is_due_and_else_when_one_will_be(
    runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.sql)
    assert runs.next_due() is None  # none PENDING
    later, sooner = runs.submit(new_run(1))[0], runs.submit(new_run(2))[0]
    for run, delay in ((later, 60), (sooner, 30)):
        claimed = runs.claim("w1", run_id=run.id)
        assert claimed is not None and runs.requeue(run.id, claimed.attempt, delay=delay)
    assert runs.next_due() == clock.time() + 30  # none due now: when the first one is
    clock.advance(45)
    due = runs.next_due()
    assert due is not None and due <= clock.time()  # one is due now: a claim takes it
    assert runs.claim("w2") is not None
    assert runs.next_due() == clock.time() + 15


def test_an_attempt_is_owned_a_stale_owner_cannot_end_it(runs: SqlRunStore) -> None:
    run = runs.submit(new_run(policy=RetryPolicy(retries=1)))[0]
    assert runs.claim("w1") is not None
    assert runs.fail(run.id, 1, "BTask", "ValueError: no") == RunState.PENDING
    second = runs.claim("w2")
    assert second is not None and second.attempt == 2

    # the first attempt's process comes back: it can neither renew, finish, fail nor requeue
    assert not runs.heartbeat(run.id, 1)
    assert not runs.complete(run.id, 1)
    assert runs.fail(run.id, 1, "X", "late") is None
    assert not runs.requeue(run.id, 1)
    assert runs.heartbeat(run.id, 2, "host:42")
    assert runs.complete(run.id, 2)
    ended = runs.get(run.id)
    assert ended is not None
    assert (ended.state, ended.attempt, ended.worker, ended.error) == (RunState.DONE, 2, "host:42", None)
    assert ended.finished_at is not None and ended.started_at is not None
    assert ended.finished_at >= ended.started_at >= ended.queued_at
    assert not runs.complete(run.id, 2)  # the end is recorded once


def test_retries_follow_the_policy_then_fail(runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.sql)
    run = runs.submit(new_run(policy=RetryPolicy(retries=2, delay=0.25, backoff=2.0)))[0]
    assert run.max_attempts == 3
    attempt = runs.claim("w")
    assert attempt is not None and attempt.attempt == 1
    assert runs.fail(run.id, 1, "BTask", "boom 1") == RunState.PENDING
    waiting = runs.get(run.id)
    assert waiting is not None and waiting.state == RunState.PENDING and waiting.failed_step == "BTask"
    assert waiting.not_before == clock.time() + 0.25  # delay * backoff**0
    assert jsonable_run(waiting)["retry_at"] == waiting.not_before and jsonable_run(waiting)["attempt"] == 1
    assert runs.submit(new_run())[0].id == run.id  # still the active run of its key

    assert runs.claim("w") is None
    clock.advance(0.25)
    second = runs.claim("w")
    assert second is not None and second.attempt == 2
    assert runs.fail(run.id, 2, "BTask", "boom 2") == RunState.PENDING
    later = runs.get(run.id)
    assert later is not None and later.not_before == clock.time() + 0.5  # delay * backoff**1
    clock.advance(0.375)
    assert runs.claim("w") is None
    clock.advance(0.125)
    third = runs.claim("w")
    assert third is not None and third.attempt == 3
    assert runs.fail(run.id, 3, "CTask", "boom 3") == RunState.FAILED
    ended = runs.get(run.id)
    assert ended is not None
    assert (ended.state, ended.attempt, ended.failed_step, ended.error) == (RunState.FAILED, 3, "CTask", "boom 3")
    assert jsonable_run(ended)["retry_at"] is None and jsonable_run(ended)["task"] == "t/c_chain/ATask"


def test_a_retry_s_delay_grows_to_a_day_at_most_whatever_the_attempt(
    runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With up to 2**31-1 attempts, ``delay * backoff**(n-1)`` raised OverflowError past attempt 1,025 (backoff 2):
    the failed attempt's end rolled back, the run stayed RUNNING, and each reclaim pass raised on it. Its delay
    stops at a day, through a failure and a reclaim alike, from the attempt it first reaches a day at."""
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.sql)
    many = RetryPolicy(retries=2**31 - 2, delay=5.0, backoff=2.0)
    failing, silent = (dataclasses.replace(new_run(n, many), attempt=1100) for n in (0, 1))
    runs.import_runs([failing, silent])
    for run in (failing, silent):
        claimed = runs.claim("w", run_id=run.id)
        assert claimed is not None and claimed.attempt == 1101
    assert runs.fail(failing.id, 1101, "BTask", "boom") == RunState.PENDING
    clock.advance(1.0)
    up_for_longer_than(runs, 1.0)
    assert [run.id for run in runs.reclaim(0.5)] == [silent.id]
    retried, reclaimed = runs.get(failing.id), runs.get(silent.id)
    assert retried is not None and retried.state == RunState.PENDING
    assert retried.not_before == clock.time() - 1.0 + 24 * 3600
    assert reclaimed is not None and reclaimed.state == RunState.PENDING
    assert reclaimed.not_before == clock.time() + 24 * 3600
    assert [many.delay_after(n) for n in (1, 15, 16, 2**31 - 1)] == [5.0, 81920.0, 24 * 3600, 24 * 3600]
    assert RetryPolicy(1, delay=3 * 24 * 3600.0).delay_after(2) == 3 * 24 * 3600  # a longer first delay is kept


def test_reclaim_ends_attempts_whose_lease_ran_out_or_whose_process_is_gone(
    runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.sql)
    silent = runs.submit(new_run(0, RetryPolicy(retries=1)))[0]
    gone = runs.submit(new_run(1))[0]
    alive = runs.submit(new_run(2))[0]
    for run, worker in ((silent, "h:1"), (gone, "h:2"), (alive, "h:3")):
        assert runs.claim("parent", run_id=run.id) is not None
        runs.heartbeat(run.id, 1, worker)
    runs.record_step(Step(silent.id, "B_1", "BTask", None, "RUNNING", executed=True))
    assert runs.reclaim(60.0, dead=lambda worker: False) == []

    clock.advance(0.3)
    up_for_longer_than(runs, 0.3)
    runs.heartbeat(alive.id, 1)
    runs.heartbeat(gone.id, 1)
    reclaimed = runs.reclaim(0.2, dead=lambda worker: worker == "h:2")
    assert {run.id: run.state for run in reclaimed} == {silent.id: RunState.RUNNING, gone.id: RunState.RUNNING}

    retried, failed, kept = (runs.get(run.id) for run in (silent, gone, alive))
    assert retried is not None and retried.state == RunState.PENDING and retried.failed_step == "BTask"
    assert retried.error is not None and retried.error.startswith("worker lost: h:1 (no heartbeat for")
    assert failed is not None and failed.state == RunState.FAILED
    assert failed.error == "worker lost: h:2 (its process is gone) during attempt 1"
    assert kept is not None and kept.state == RunState.RUNNING
    assert not runs.heartbeat(silent.id, 1)  # the lost attempt cannot come back


def test_a_lease_that_ran_out_is_renewed_no_more_though_no_worker_reclaimed_it(
    runs: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule reclaim follows (:func:`~nectar.registry.model.lease_ran_out`) is the heartbeat's: a lease silent for
    longer than its timeout is lost to its attempt, reclaimed yet or not; one silent for its timeout exactly holds."""
    clock = Clock(start=float(int(time.time()))).install(monkeypatch, nectar.registry.sql)
    held, ran_out = (runs.submit(new_run(n, RetryPolicy(retries=1)))[0] for n in range(2))
    for run in (held, ran_out):
        assert runs.claim("parent", run_id=run.id) is not None
        assert runs.heartbeat(run.id, 1, "h:1", 5.0)
    clock.advance(5.0)
    assert runs.heartbeat(held.id, 1, "h:1", 5.0)  # silent for its timeout: held, renewed
    clock.advance(0.5)
    up_for_longer_than(runs, 5.5)
    assert not runs.heartbeat(ran_out.id, 1, "h:1", 5.0)  # silent longer: not renewed, though still RUNNING
    assert [run.id for run in runs.reclaim(5.0)] == [ran_out.id]
    after = runs.get(ran_out.id)
    assert after is not None and after.state == RunState.PENDING and after.error is not None
    assert after.error.startswith("worker lost: h:1 (no heartbeat for ")
    assert runs.heartbeat(held.id, 1, "h:1", 5.0)


def test_cancel_ends_a_queued_or_running_run_and_refuses_an_ended_one(runs: SqlRunStore) -> None:
    queued = runs.submit(new_run(0))[0]
    running = runs.submit(new_run(1))[0]
    assert runs.claim("w", run_id=running.id) is not None

    for run in (queued, running):
        before, after = runs.cancel(run.id)
        assert before.state.active and after.state == RunState.CANCELLED
        assert after.error == "cancelled by request" and after.finished_at is not None
    assert not runs.heartbeat(running.id, 1) and not runs.complete(running.id, 1)
    assert runs.claim("w") is None
    with pytest.raises(RunFinished, match="already ended: CANCELLED"):
        runs.cancel(queued.id)
    with pytest.raises(RunNotFound):
        runs.cancel("no-such-run")
    assert runs.submit(new_run(0))[1]  # a cancelled key can be submitted again


def test_the_queue_is_bounded_but_an_identical_run_is_still_answered(runs: SqlRunStore) -> None:
    first = runs.submit(new_run(0), max_pending=2)[0]
    runs.submit(new_run(1), max_pending=2)
    with pytest.raises(QueueFull, match="2 runs are queued"):
        runs.submit(new_run(2), max_pending=2)
    assert runs.submit(new_run(0), max_pending=2) == (first, False)
    assert runs.claim("w") is not None  # a claimed run leaves the queue
    assert runs.submit(new_run(2), max_pending=2)[1]
    assert runs.count(RunState.PENDING) == 2


def test_steps_are_listed_requested_task_last_and_remember_they_ran(runs: SqlRunStore) -> None:
    run = runs.submit(new_run())[0]
    runs.record_step(Step(run.id, "B_1", "BTask", None, "PENDING"))  # the requested task, discovered first
    runs.record_steps(
        [
            Step(run.id, "A_1", "ATask", None, "PENDING"),
            Step(run.id, "A_1", "ATask", None, "RUNNING", executed=True),
            Step(run.id, "A_1", "ATask", None, "FAILED", error="boom"),
        ]
    )
    runs.record_step(Step(run.id, "B_1", "BTask", None, "DONE"))

    steps = runs.steps(run.id)
    assert [(s.task, s.state, s.executed, s.error) for s in steps] == [
        ("ATask", "FAILED", True, "boom"),
        ("BTask", "DONE", False, None),
    ]
    assert runs.steps("no-such-run") == []


def test_an_attempt_ends_with_its_last_steps_written_in_the_same_commit(runs: SqlRunStore) -> None:
    """An attempt's end carries its last step changes (one commit for both, :meth:`RunStore.complete`): written as
    record_steps writes an attempt's, only while it owns its run (a first attempt come back late writes none)."""
    run = runs.submit(new_run(policy=RetryPolicy(retries=1)))[0]
    assert runs.claim("w1") is not None
    runs.record_steps([Step(run.id, "B_1", "BTask", None, "PENDING"), Step(run.id, "B_1", "BTask", None, "RUNNING")])
    assert runs.fail(run.id, 1, "BTask", "ValueError: no") == RunState.PENDING
    assert runs.claim("w2") is not None

    late = [Step(run.id, "A_1", "ATask", None, "DONE", executed=True)]
    assert not runs.complete(run.id, 1, late)  # the first attempt, come back late: none of its steps is written
    assert [(s.task, s.state) for s in runs.steps(run.id)] == [("BTask", "RUNNING")]
    assert runs.complete(run.id, 2, [*late, Step(run.id, "B_1", "BTask", None, "DONE", executed=True)])

    ended = runs.get(run.id)
    assert ended is not None and (ended.state, ended.attempt) == (RunState.DONE, 2)
    assert [(s.task, s.state, s.executed) for s in runs.steps(run.id)] == [
        ("ATask", "DONE", True),
        ("BTask", "DONE", True),
    ]


#: how an ended attempt's RUNNING steps are failed: by whoever releases it (its reclaimer, its worker seeing its
#: process die), or by the attempt itself once it recorded its failure; the error each gives
ENDINGS: dict[str, tuple[Callable[[SqlRunStore, Run], None], str]] = {
    "release": (lambda runs, run: release(runs, run, "worker lost: w1", None), "worker lost: w1"),
    "end_running_steps": (lambda runs, run: end_running_steps(runs, run, "BTask"), "not finished: BTask failed"),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_an_ended_attempt_s_running_steps_fail_unless_a_later_attempt_has_claimed_the_run(
    runs: SqlRunStore, ending: str
) -> None:
    """The steps an attempt left RUNNING are failed as that attempt's: once a later attempt has claimed the run (a
    retry due at once), they are the later one's, which may have started the same step again: left as they are."""
    end, error = ENDINGS[ending]
    run = runs.submit(new_run(policy=RetryPolicy(retries=2)))[0]
    first = runs.claim("w1")
    assert first is not None
    assert runs.record_steps([Step(run.id, "B_1", "BTask", None, "RUNNING", executed=True)], attempt=1)
    assert runs.fail(run.id, 1, "BTask", "worker lost") == RunState.PENDING
    second = runs.claim("w2")
    assert second is not None and second.attempt == 2
    assert runs.record_steps([Step(run.id, "B_1", "BTask", None, "RUNNING", executed=True)], attempt=2)

    end(runs, first)  # late: attempt 2 runs the step now
    assert [(s.task, s.state, s.error) for s in runs.steps(run.id)] == [("BTask", "RUNNING", None)]

    assert runs.fail(run.id, 2, "BTask", "ValueError: no") == RunState.PENDING
    end(runs, second)  # in time: no attempt since
    assert [(s.task, s.state, s.error) for s in runs.steps(run.id)] == [("BTask", "FAILED", error)]


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_requeued_attempt_s_running_steps_fail_unless_its_run_was_claimed_again(
    runs: SqlRunStore, ending: str
) -> None:
    """A requeued attempt (its worker stopping, luigid unreachable) gives its number back: the next claim's attempt
    has the same one. Its steps are failed after the requeue, but not once that claim has started the step again."""
    end, error = ENDINGS[ending]
    run = runs.submit(new_run())[0]
    first = runs.claim("w1")
    assert first is not None
    assert runs.record_steps([Step(run.id, "B_1", "BTask", None, "RUNNING", executed=True)], attempt=1)
    assert runs.requeue(run.id, 1)
    end(runs, first)  # after its own requeue: its steps still
    assert [(s.task, s.state, s.error) for s in runs.steps(run.id)] == [("BTask", "FAILED", error)]

    again = runs.claim("w2")
    assert again is not None and again.attempt == 1 and again.started_at != first.started_at
    assert runs.record_steps([Step(run.id, "B_1", "BTask", None, "RUNNING", executed=True)], attempt=1)
    end(runs, first)  # late: the same number, another claim
    assert [(s.task, s.state, s.error) for s in runs.steps(run.id)] == [("BTask", "RUNNING", None)]


def test_an_attempt_s_steps_are_written_only_while_it_owns_its_run(runs: SqlRunStore) -> None:
    """Steps told by an attempt (``attempt`` given) are written only while that attempt owns its run: between two
    attempts, by the first come back late, or once the run is cancelled, nothing is written and the answer says so;
    its successor's steps stay as it wrote them."""
    run = runs.submit(new_run(policy=RetryPolicy(retries=1)))[0]
    assert runs.claim("w1") is not None
    assert runs.record_steps([Step(run.id, "B_1", "BTask", None, "RUNNING", executed=True)], attempt=1)
    assert runs.fail(run.id, 1, "BTask", "ValueError: no") == RunState.PENDING
    assert not runs.record_steps([Step(run.id, "A_1", "ATask", None, "RUNNING", executed=True)], attempt=1)
    assert runs.claim("w2") is not None
    assert runs.record_steps([Step(run.id, "B_1", "BTask", None, "DONE", executed=True)], attempt=2)
    late = [Step(run.id, "B_1", "BTask", None, "RUNNING", executed=True), Step(run.id, "A_1", "ATask", None, "PENDING")]
    assert not runs.record_steps(late, attempt=1)
    runs.cancel(run.id)
    assert not runs.record_steps([Step(run.id, "A_1", "ATask", None, "RUNNING", executed=True)], attempt=2)

    assert [(s.task, s.state, s.error) for s in runs.steps(run.id)] == [("BTask", "DONE", None)]


def test_registry_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    run = closed_at_end(SQLiteRunStore(path)).submit(new_run())[0]
    reopened = closed_at_end(SQLiteRunStore(path))
    assert reopened.get(run.id) == run and reopened.check() == f"sqlite {path}"
    assert reopened.get("missing") is None and reopened.latest("chains/none") is None


def test_a_registry_written_before_versions_upgrades_itself(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as conn:  # the first schema, as Datanectar wrote it then
        conn.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, key TEXT NOT NULL, chain_type TEXT NOT NULL, chain TEXT NOT NULL,"
            " task TEXT NOT NULL, params TEXT NOT NULL, task_id TEXT NOT NULL, state TEXT NOT NULL,"
            " queued_at REAL NOT NULL, started_at REAL, finished_at REAL, worker TEXT, failed_step TEXT, error TEXT)"
        )
        conn.execute(
            "INSERT INTO runs VALUES ('r1', 'k', 't', 'c_chain', 'ATask', '{}', 'ATask_1', 'PENDING', 1.0,"
            " NULL, NULL, NULL, NULL, NULL)"
        )
    conn.close()
    runs = closed_at_end(SQLiteRunStore(path))
    old = runs.get("r1")
    assert old is not None and (old.attempt, old.max_attempts, old.not_before) == (0, 1, 0.0)
    claimed = runs.claim("w")
    assert claimed is not None and claimed.attempt == 1
    assert runs.steps("r1") == []  # a table of steps made by the upgrade (the file had none), not a missing table
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.close()
    assert closed_at_end(SQLiteRunStore(path)).get("r1") is not None  # opening an up-to-date file changes nothing


def test_a_registry_of_schema_13_keeps_its_runs_and_steps_made_anew_by_their_primary_key(tmp_path: Path) -> None:
    """A file as schema 13 made it (its steps by rowid, beside their primary key's index), with runs and steps
    written under it: opened, it keeps every run and step, its steps now in their primary key's b-tree alone
    (``WITHOUT ROWID``), which a status lookup and a step written after read and write as before."""
    path = tmp_path / "runs.sqlite3"
    lite = sqlite3.connect(path, isolation_level=None)
    for statement in (statement for migration in MIGRATIONS[:13] for statement in migration):
        for text in OWN_STATEMENTS[statement] if statement in OWN_STATEMENTS else [statement.format(real="REAL")]:
            lite.execute(text)
    lite.execute("PRAGMA user_version = 13")
    made = [dataclasses.replace(new_run(n), state=RunState.DONE, attempt=1) for n in range(3)]
    lite.executemany(f"INSERT INTO runs ({RUNS}) VALUES ({param_marks(RUN_COLUMNS)})", map(run_row, made))
    steps = [(run.id, f"{task}_{run.id}", task, run.key, "DONE", 1, None, 1.0, seq) for run in made
             for seq, task in enumerate(("BTask", "ATask"))]  # fmt: skip
    lite.executemany(f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) VALUES ({param_marks(STEP_COLUMNS)})", steps)
    lite.close()

    runs = closed_at_end(SQLiteRunStore(path))
    assert [runs.get(run.id) for run in made] == made
    status, found = runs.latest_status(made[1].key)
    assert status is not None and status.id == made[1].id
    assert [(step.task, step.state, step.executed) for step in found] == [
        ("ATask", "DONE", True),
        ("BTask", "DONE", True),
    ]
    assert runs.record_steps([Step(made[2].id, f"ATask_{made[2].id}", "ATask", made[2].key, "FAILED", error="x")])
    assert [(step.task, step.state) for step in runs.steps(made[2].id)] == [("ATask", "FAILED"), ("BTask", "DONE")]
    look = sqlite3.connect(path)
    assert look.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert look.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 6
    table = look.execute("SELECT sql FROM sqlite_master WHERE name = 'steps'").fetchone()[0]
    indexes = look.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'steps'").fetchall()
    look.close()
    assert table.endswith("WITHOUT ROWID") and indexes == []  # its primary key is the table: no index beside it


def test_find_filters_and_pages_newest_first(runs: SqlRunStore) -> None:
    made = []
    for n in range(7):
        run = new_run(n)
        other = Run.new(f"chains/t/d_chain/BTask/{DIGEST}/out.txt#{n}", "t", "d_chain", "BTask", {}, f"BTask_{n}")
        for queued in (run, other):
            runs.submit(dataclasses.replace(queued, queued_at=1000.0 + n))
        made.append(run.id)
    runs.cancel(made[3])

    page, total = runs.find(RunFilter(chain="c_chain"), offset=0, limit=3)
    assert total == 7 and [r.id for r in page] == made[::-1][:3]
    page, total = runs.find(RunFilter(chain="c_chain"), offset=6, limit=3)
    assert total == 7 and [r.id for r in page] == [made[0]]
    assert runs.find(RunFilter(), limit=100)[1] == 14
    assert [r.id for r in runs.find(RunFilter(state=RunState.CANCELLED))[0]] == [made[3]]
    assert runs.find(RunFilter(chain_type="t", chain="c_chain", task="BTask"))[1] == 0
    assert [r.id for r in runs.find(RunFilter(task="ATask", since=1002.0, until=1004.0))[0]] == [made[3], made[2]]
    assert runs.find(RunFilter(state=RunState.PENDING), offset=100) == ([], 13)


def test_a_listing_by_state_counts_as_many_runs_as_it_lists(runs: SqlRunStore) -> None:
    """Many runs in several states (queued, claimed, cancelled): the total of a listing by each state, and of one
    with no filter, is the number of runs it lists page after page (read from the counts kept with each change)."""
    made = [runs.submit(dataclasses.replace(new_run(n), queued_at=1000.0 + n))[0].id for n in range(240)]
    for n in range(60):
        assert runs.claim(f"worker-{n}") is not None
    for run_id in made[::7]:
        runs.cancel(run_id)
    for where in [RunFilter(), *(RunFilter(state=state) for state in RunState)]:
        listed, offset = [], 0
        while page := runs.find(where, offset=offset, limit=50)[0]:
            listed += page
            offset += 50
        total = runs.find(where, limit=1)[1]
        assert total == len(listed) == len({run.id for run in listed}) == runs.count(where.state), where
    assert runs.find(RunFilter(state=RunState.PENDING), limit=1)[1] == runs.queued() > 0


def test_a_listing_by_state_counts_its_runs_without_reading_them(tmp_path: Path) -> None:
    """The total of a listing by state alone is read from the one row of counts (``run_counts``), not counted
    over the runs in that state (``COUNT(*)`` through the index ``runs_queue``: every one of them, per page)."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    for n in range(5):
        runs.submit(new_run(n))
    statements: list[str] = []
    runs._read(lambda db: db.set_trace_callback(statements.append))  # the connection this thread's reads borrow
    try:
        assert runs.find(RunFilter(state=RunState.PENDING), limit=2)[1] == 5
        assert runs.find(RunFilter(), limit=2)[1] == 5
        assert runs.find(RunFilter(chain="c_chain", state=RunState.PENDING), limit=2)[1] == 5  # counted: by chain
    finally:
        runs._read(lambda db: db.set_trace_callback(None))
    counts = [statement for statement in statements if "COUNT(" in statement.upper()]
    assert len(counts) == 1 and "chain = " in counts[0], statements
    runs.close()


def test_an_older_release_refuses_a_newer_registry(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    closed_at_end(SQLiteRunStore(path))
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this release"):
        closed_at_end(SQLiteRunStore(path))


def test_a_connection_opened_after_a_newer_release_migrated_the_file_refuses_it(tmp_path: Path) -> None:
    """The schema is checked as each connection opens (a gunicorn master opens the registry once for its workers):
    a newer release's migration since is refused by a new connection (a thread's while the process's one opened
    before it is lent to another) and a forked child's, every time."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    assert runs.latest("chains/t/c/T/0/out.txt") is None  # the process's connection, opened before the migration
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    refused: list[str] = []

    def read() -> None:
        for _ in range(2):  # a connection the check refused is not kept: the next read is refused again
            try:
                runs.latest("chains/t/c/T/0/out.txt")
            except RuntimeError as exc:
                refused.append(str(exc))

    thread = threading.Thread(target=read)

    def beside(_: object) -> None:  # the process's connection held by this thread meanwhile: the other opens its own
        thread.start()
        thread.join()

    runs._read(beside)
    assert len(refused) == 2 and all("newer than this release" in why for why in refused)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's own outcome is read from the pipe)
        refused.clear()
        read()
        os.write(write_fd, str(len(refused)).encode())
        os._exit(0)
    os.close(write_fd)
    assert os.read(read_fd, 16) == b"2"
    os.waitpid(child, 0)
    os.close(read_fd)


def test_a_write_after_a_newer_release_migrated_the_file_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """A process's threads write through one connection of their own, opened at the first write: it is checked as
    every new connection is, before its first write goes in."""
    path = tmp_path / "runs.sqlite3"
    runs = closed_at_end(SQLiteRunStore(path))
    assert runs.latest("chains/t/c/T/0/out.txt") is None
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for n in range(2):  # a connection the check refused is not kept: the next write is refused again
        with pytest.raises(RuntimeError, match="newer than this release"):
            runs.submit(new_run(n))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    conn.close()


def test_runs_imported_in_bulk_are_read_as_any_other(runs: SqlRunStore) -> None:
    """The public bulk load (the benchmarks' population): runs as they are, steps in the order given."""
    done = [dataclasses.replace(new_run(n), state=RunState.DONE, attempt=1, finished_at=2.0) for n in range(3)]
    steps = [Step(run.id, f"{task}_{run.id}", task, None, "DONE", executed=True) for run in done for task in "AB"]
    runs.import_runs(done, steps)
    assert runs.count(RunState.DONE) == 3 and runs.get(done[1].id) == done[1]
    assert [s.task for s in runs.steps(done[0].id)] == ["B", "A"]  # the last recorded first, as record_steps
