"""Commit fencing over a real folder and a real (moto) S3 server: a refused commit leaves nothing behind."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi
import pytest

import nectar.attempt
import nectar.leases
import nectar.registry.sql
from nectar import fence
from nectar.config import Settings
from nectar.errors import LeaseLost
from nectar.keys import TargetKey
from nectar.leases import AttemptLease
from nectar.registry import Run, RunStore, Step
from nectar.registry.sqlite import SQLiteRunStore
from nectar.steps import StepRecorder
from nectar.stores import TargetStore, get_store
from nectar.stores.local import LocalStore
from nectar.stores.s3 import S3Store
from tests.clock import Clock
from tests.helpers.registries import closed_at_end

KEY = TargetKey.parse("chains/etl/sales_chain/AggregateSalesTask/0123456789abcdef0123456789abcdef/out.txt")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Settings) -> TargetStore:
    if request.param == "s3":
        return get_store(request.getfixturevalue("s3_settings"))
    return get_store(settings)


class Lease:
    """A lease that holds until ``lost`` is set; counts how often it was asked."""

    def __init__(self) -> None:
        self.lost = False
        self.asked = 0

    def renew(self) -> bool:
        self.asked += 1
        return not self.lost


@pytest.fixture
def lease() -> Iterator[Lease]:
    held = Lease()
    fence.install(fence.lease_guard(held.renew, "attempt 1 of run r1"))
    yield held
    fence.install(None)


def leftovers(store: TargetStore) -> list[str]:
    """Files (temporary ones, say) left in the key's folder."""
    if isinstance(store, S3Store):
        listed = store.boto.list_objects_v2(Bucket=store.bucket, Prefix=f"{KEY.folder}/")
        # (luigi's temporary_path() makes a "folder/" marker object first: not a file)
        return sorted(item["Key"] for item in listed.get("Contents", []) if not item["Key"].endswith("/"))
    assert isinstance(store, LocalStore)
    folder = store.path(KEY).parent
    return sorted(str(path) for path in folder.iterdir()) if folder.exists() else []


def test_a_held_lease_commits_and_is_asked_once_per_commit(store: TargetStore, lease: Lease) -> None:
    store.write_text(KEY, "whole\n")

    assert store.read_text(KEY) == "whole\n"
    assert lease.asked == 1


def test_a_lost_lease_discards_the_write_and_names_the_attempt(store: TargetStore, lease: Lease) -> None:
    handle = store.open(KEY, "w")
    handle.write("written by an attempt that was reclaimed meanwhile\n")
    lease.lost = True

    with pytest.raises(LeaseLost, match="attempt 1 of run r1 no longer owns its run"):
        handle.close()

    assert not store.exists(KEY)
    assert leftovers(store) == []


def test_a_lost_lease_refuses_write_text_and_leaves_nothing(store: TargetStore, lease: Lease) -> None:
    lease.lost = True

    with pytest.raises(LeaseLost, match="attempt 1 of run r1 no longer owns its run"):
        store.write_text(KEY, "params of an attempt that was reclaimed meanwhile\n")

    assert not store.exists(KEY)
    assert leftovers(store) == []


def test_a_lost_lease_refuses_put_file(store: TargetStore, lease: Lease, tmp_path: Path) -> None:
    source = tmp_path / "stdout.log"
    source.write_text("log of a lost attempt\n")
    lease.lost = True

    with pytest.raises(LeaseLost):
        store.put_file(source, KEY)

    assert not store.exists(KEY)
    assert leftovers(store) == []


def test_a_registry_that_cannot_answer_refuses_the_commit(store: TargetStore) -> None:
    def renew() -> bool:
        raise OSError("database is locked")

    fence.install(fence.lease_guard(renew, "attempt 2 of run r1"))
    try:
        with pytest.raises(LeaseLost, match="could not confirm its lease.*database is locked"):
            store.write_text(KEY, "unproven\n")
    finally:
        fence.install(None)

    assert not store.exists(KEY)


def test_without_a_guard_commits_are_free(store: TargetStore) -> None:
    store.write_text(KEY, "no run owns this process\n")

    assert store.exists(KEY)


def test_a_lost_lease_refuses_a_temporary_path_rename(store: TargetStore, lease: Lease) -> None:
    target = store.target(KEY)

    with pytest.raises(LeaseLost):
        with target.temporary_path() as temporary:
            if isinstance(store, LocalStore):
                Path(temporary).write_text("written through a temporary path\n")
            else:
                target.fs.put_string("written through a temporary path\n", temporary)
            lease.lost = True

    assert not store.exists(KEY)
    assert leftovers(store) == []


def heartbeat_at(runs: RunStore, run: Run) -> float | None:
    current = runs.get(run.id)
    assert current is not None
    return current.heartbeat_at


def test_an_attempt_confirms_by_reading_while_its_lease_is_fresh(
    claimed: tuple[RunStore, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit costs the registry a read, not a write, within a heartbeat interval of the last renewal."""
    runs, run = claimed
    assert run.heartbeat_at is not None
    clock = Clock(start=run.heartbeat_at).install(
        monkeypatch, nectar.leases, nectar.registry.sql
    )  # the claim's instant
    lease = AttemptLease(runs, run, interval=0.5)
    clock.advance(0.2)
    assert lease.confirm() and lease.confirm()  # the claim, 0.2 s ago, was a renewal
    assert heartbeat_at(runs, run) == run.heartbeat_at
    clock.advance(0.4)  # silent for longer than an interval since the claim (as if frozen): renews before saying yes
    assert lease.confirm()
    assert heartbeat_at(runs, run) == clock.time()
    clock.advance(0.2)
    assert lease.confirm()  # fresh again: a read
    assert heartbeat_at(runs, run) == clock.time() - 0.2


def test_an_attempt_handed_over_late_renews_before_its_first_commit(
    claimed: tuple[RunStore, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, run = claimed
    assert run.heartbeat_at is not None
    # more than half an interval between the claim and the attempt's start
    clock = Clock(start=run.heartbeat_at + 0.3).install(monkeypatch, nectar.leases, nectar.registry.sql)
    lease = AttemptLease(runs, run, interval=0.5)
    assert lease.confirm()
    assert heartbeat_at(runs, run) == clock.time()


@pytest.mark.parametrize("taken", ["cancelled", "reclaimed"])
def test_an_attempt_whose_run_was_taken_is_refused_at_once(claimed: tuple[RunStore, Run], taken: str) -> None:
    runs, run = claimed
    lease = AttemptLease(runs, run, interval=60)
    assert lease.confirm()
    if taken == "cancelled":
        runs.cancel(run.id)
    else:
        assert [r.id for r in runs.reclaim(0.0, dead=lambda worker: True)] == [run.id]

    assert not lease.confirm()
    assert lease.lost


def test_a_commit_reads_nothing_while_no_one_else_has_written_and_a_cancel_elsewhere_is_refused_at_once(
    claimed: tuple[RunStore, Run], settings: Settings
) -> None:
    """A fan-out's many commits cost the registry a look at its data_version, not a read of the run each; a cancel
    by another process (another connection) is still seen by the very next commit."""
    runs, run = claimed
    lease = AttemptLease(runs, run, interval=60)
    assert lease.confirm()
    assert isinstance(runs, SQLiteRunStore)
    statements: list[str] = []
    runs._read(lambda db: db.set_trace_callback(statements.append))  # the connection this thread's reads borrow
    try:
        assert all(lease.confirm() for _ in range(5))
        assert statements, "the lease's looks went through another connection than the one traced"
        assert [s for s in statements if "FROM runs" in s] == []
        elsewhere = threading.Thread(
            target=lambda: closed_at_end(SQLiteRunStore(settings.registry_path)).cancel(run.id)
        )
        elsewhere.start()
        elsewhere.join()
        assert not lease.confirm()
        assert lease.lost
    finally:
        runs._read(lambda db: db.set_trace_callback(None))


def test_the_read_that_confirms_a_lease_reads_the_runs_state_and_attempt_not_the_whole_run(
    claimed: tuple[RunStore, Run],
) -> None:
    """The fence asks before each commit of a step (params.txt, output, logs), and after each write of the attempt's
    own steps it reads again: two columns of one row, not the run's 25 made into a ``Run``."""
    runs, run = claimed
    assert isinstance(runs, SQLiteRunStore)
    read: set[str] = set()

    def note(action: int, table: str | None, column: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_READ and table == "runs" and column:
            read.add(column)
        return sqlite3.SQLITE_OK

    runs._read(lambda db: db.set_authorizer(note))  # the thread's own connection, which its next reads use
    try:
        assert runs.owns(run.id, run.attempt) and not runs.owns(run.id, run.attempt + 1)
    finally:
        runs._read(lambda db: db.set_authorizer(None))
    assert read == {"id", "attempt", "state"}, read


def take_away(settings: Settings, run: Run, taken: str) -> None:
    """Another process (another connection) takes ``run`` from its attempt: ``cancelled``, or ``reclaimed``."""
    other = closed_at_end(SQLiteRunStore(settings.registry_path))
    try:
        if taken == "cancelled":
            other.cancel(run.id)
        else:
            assert [r.id for r in other.reclaim(0.0, dead=lambda worker: True)] == [run.id]
    finally:
        other.close()


@pytest.mark.parametrize("taken", ["cancelled", "reclaimed"])
def test_the_check_after_the_attempts_own_step_write_looks_then_reads_and_refuses_a_run_taken_since(
    claimed: tuple[RunStore, Run], settings: Settings, taken: str
) -> None:
    """The attempt's own RUNNING write changes the data_version its next look compares: the look, then the read of the
    run it then needs, each one statement (no transaction around them); a run cancelled or reclaimed by another
    process after that write is refused by the next check all the same."""
    runs, run = claimed
    assert isinstance(runs, SQLiteRunStore)
    lease = AttemptLease(runs, run, interval=60)
    assert lease.confirm()
    statements: list[str] = []
    runs._read(lambda db: db.set_trace_callback(statements.append))  # the connection this thread's reads borrow
    try:
        runs.record_steps([Step(run.id, run.task_id, run.task, None, "RUNNING", True)])
        assert lease.confirm()
        assert [s.split()[0] for s in statements] == ["PRAGMA", "SELECT"], statements
        runs.record_steps([Step(run.id, run.task_id, run.task, None, "RUNNING", True)])
        take_away(settings, run, taken)
        assert not lease.confirm()
        assert lease.lost
    finally:
        runs._read(lambda db: db.set_trace_callback(None))


class StartedStep(luigi.Task):
    """A step whose start an attempt records (a task of no chain: no logs to open)."""


@pytest.mark.parametrize("taken", ["cancelled", "reclaimed"])
def test_a_step_started_by_an_attempt_that_lost_its_run_is_not_written_and_no_commit_of_it_asks_the_registry(
    claimed: tuple[RunStore, Run], settings: Settings, taken: str
) -> None:
    """The write of a step's start is the fence's question: an attempt whose run was taken from it (cancelled, or
    reclaimed and failed) writes no RUNNING step into that run, its lease is lost at once (the heartbeat is woken to
    stop it), and the step's first commit is refused without a look at the registry."""
    runs, run = claimed
    assert isinstance(runs, SQLiteRunStore)
    lease = AttemptLease(runs, run, interval=60)
    take_away(settings, run, taken)
    recorder = StepRecorder(runs, run.id, run.attempt, lease.refused)
    recorder.start(StartedStep())

    assert StartedStep().task_id not in [step.task_id for step in runs.steps(run.id)]
    assert recorder.lost and lease.lost and lease._wake.is_set()
    statements: list[str] = []
    runs._read(lambda db: db.set_trace_callback(statements.append))
    fence.install(nectar.attempt.commit_guard(runs, run, lease))
    try:
        with pytest.raises(LeaseLost, match="no longer owns its run"):
            fence.check("params.txt")
        recorder.record(StartedStep(), "FAILED", "late")  # nothing more of this attempt is written
    finally:
        fence.install(None)
        runs._read(lambda db: db.set_trace_callback(None))
    assert statements == []
    assert StartedStep().task_id not in [step.task_id for step in runs.steps(run.id)]


@pytest.mark.parametrize("taken", ["cancelled", "reclaimed"])
def test_the_check_after_a_step_s_start_is_a_look_not_a_read_and_refuses_a_run_taken_since(
    claimed: tuple[RunStore, Run], settings: Settings, taken: str
) -> None:
    """A step's start is written only while the attempt owns its run, and the write, in its turn at the file,
    leaves the fence's look knowing it: the check of the step's params.txt that follows looks at data_version and
    reads no row; a run cancelled or reclaimed by another process after that is refused by the next check all the
    same."""
    runs, run = claimed
    assert isinstance(runs, SQLiteRunStore)
    lease = AttemptLease(runs, run, interval=60)
    recorder = StepRecorder(runs, run.id, run.attempt, lease.refused)
    recorder.start(StartedStep())
    assert [(s.task_id, s.state) for s in runs.steps(run.id)] == [(StartedStep().task_id, "RUNNING")]
    statements: list[str] = []
    runs._read(lambda db: db.set_trace_callback(statements.append))  # the connection this thread's reads borrow
    try:
        assert lease.confirm()
        assert [s.split()[0] for s in statements] == ["PRAGMA"], statements
        take_away(settings, run, taken)
        assert not lease.confirm()
        assert lease.lost
    finally:
        runs._read(lambda db: db.set_trace_callback(None))


@pytest.mark.parametrize("taken", ["cancelled", "reclaimed"])
def test_a_run_taken_between_the_look_and_its_read_is_refused_by_that_check(
    claimed: tuple[RunStore, Run], settings: Settings, taken: str
) -> None:
    """The look and the read it needs are two statements, the read the later: a run cancelled or reclaimed by another
    process after the look found the version moved, and before the read, is refused by that very check (the read
    sees the commit), and by every check after it (the version kept is the look's, from before the commit)."""
    runs, run = claimed
    assert isinstance(runs, SQLiteRunStore)
    lease = AttemptLease(runs, run, interval=60)
    assert lease.confirm()
    runs.record_steps([Step(run.id, run.task_id, run.task, None, "RUNNING", True)])  # the next look finds it moved
    landed: list[str] = []

    def between(statement: str) -> None:
        if statement.startswith("SELECT state FROM runs") and not landed:  # the look is done, its read begins
            take_away(settings, run, taken)
            landed.append(statement)

    runs._read(lambda db: db.set_trace_callback(between))  # the connection this thread's reads borrow
    try:
        assert not lease.confirm()
    finally:
        runs._read(lambda db: db.set_trace_callback(None))
    assert landed, "the check read no row"
    assert lease.lost and not runs.owns(run.id, run.attempt)
