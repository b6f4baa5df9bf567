"""review9 (round 55): a run claimed in a spare's name (by its worker's loop, or by the spare itself once its worker
allowed it: wt55-dispatch3) whose process dies before its attempt began, through a worker's executor in this process
(its spares are forks of it) and the registry."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from harness import stopped
from nectar import spares as spares_module
from nectar.config import Settings
from nectar.errors import RegistryUnavailable
from nectar.executor import Executor
from nectar.registry import Run, RunState, open_run_store
from nectar.registry.store import RunStore
from nectar.service import Nectar
from nectar.spares import AHEAD
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import (  # noqa: F401 (fixtures)
    charged_once,
    first_spare,
    gate,
    new_executor,
    pid_of,
    quick,
    run_to_its_end,
    submit,
)

#: the first byte of a frame that hands a spare its run (``spares._TELL``, ``spares._QUIET``)
RUN_FRAMES = (b"t", b"q")


def held_once_the_run_is_its_own(
    settings: Settings, tmp_path: Path, opened: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The first spare to hold a run claimed in its name waits until ``opened`` exists, before its attempt begins:
    its worker's loop claimed the run and sent it (the spare waits before it reads it: its frame left unread), or the
    spare claimed it itself (it waits once its claim returned, before it tells its worker). The file answered names
    the spare once it waits there."""
    held, tester = tmp_path / "held", os.getpid()
    store = open_run_store(settings)
    kind = type(store)  # the registry's own class: SQLite's claims in a statement of its own
    store.close()
    claim, read_run = kind.claim, spares_module._read_run

    def wait_there() -> None:
        held.write_text(str(os.getpid()))
        wait_until(opened.exists, timeout=120)  # killed there first

    def claiming(self: RunStore, worker: str, run_id: str | None = None) -> Run | None:
        run = claim(self, worker, run_id)
        if run is not None and os.getpid() != tester and not held.exists():  # a spare claimed it in its own name
            wait_there()
        return run

    def reading(channel: socket.socket) -> bytes | None:
        if os.getpid() != tester and not held.exists():
            head = channel.recv(_HEAD, socket.MSG_PEEK)  # the frame's length and first byte, left unread
            if head[_HEAD - 1 :] in RUN_FRAMES:  # its run, handed over: waits before it reads it
                wait_there()
        return read_run(channel)

    monkeypatch.setattr(kind, "claim", claiming)
    monkeypatch.setattr(spares_module, "_read_run", reading)
    return held


#: bytes of a frame's head: its length (4), then its first byte
_HEAD = 5


def test_a_spare_killed_holding_its_claim_before_its_attempt_began_costs_the_run_no_attempt(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    tmp_path: Path,
    gate: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run is RUNNING in the spare's name, the spare is killed (-9) before its attempt began (nothing of the run
    ran, no heartbeat of its own): the run goes back to the queue, uncounted, and ends DONE at its first attempt, as
    main does for a spare killed between the claim in its name and its read of the run
    (test_spare's test_a_spare_killed_after_its_claim_before_it_read_its_run_costs_the_run_no_attempt). wt55-dispatch3
    lets a spare claim in its own name and tell its worker after; one killed between its claim and its word was
    reclaimed as a lost attempt (``Executor._lost_allowed``: ``runs.reclaim``), a failed attempt counted: with no
    retries (the default) the run FAILED, "worker lost", though it never began."""
    held = held_once_the_run_is_its_own(quick, tmp_path, gate, monkeypatch)
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    spare = first_spare(executor)
    run_id = submit(nectar, 21)

    def claimed() -> bool:
        executor._serve_once()
        return held.exists()

    wait_until(claimed, timeout=60)
    assert int(held.read_text()) == spare.pid
    running = nectar.runs.get(run_id)
    assert running is not None and running.state == RunState.RUNNING and pid_of(running) == spare.pid, running
    os.kill(spare.pid, signal.SIGKILL)
    gate.touch()  # for none: only the first spare to hold a run waits there

    run = run_to_its_end(executor, nectar, run_id)

    charged_once(nectar, run)
    assert pid_of(run) != spare.pid


def test_a_registry_that_stops_answering_claims_costs_no_spare_while_it_is_down(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claims fail (RegistryUnavailable: PostgreSQL restarting, a fault made here by the claim itself while a file
    exists) for a number of the worker's passes, each ended as ``serve_forever`` ends one (the error said, the loop
    goes on): its spares wait, none dies, none is forked anew; once claims answer again the run queued meanwhile ends
    DONE at its first attempt. On main the worker's loop claims, and a failed claim leaves its spare ready. With
    wt55-dispatch3's work in progress a spare allowed to claim does it in its own process: a failed claim there is an
    exception out of its ``_serve`` (a traceback on its stderr, exit 1), the worker hears it died and allows the next
    ready spare at its next pass, and forks another: a spare forked and lost per pass while the registry is down."""
    down, forks = tmp_path / "down", [0]
    down.touch()
    store = open_run_store(quick)
    kind = type(store)
    store.close()
    claim, fork = kind.claim, spares_module.Spares._fork

    def failing(self: RunStore, worker: str, run_id: str | None = None) -> Run | None:
        if down.exists():
            raise RegistryUnavailable("the registry is restarting (review9's fault)")
        return claim(self, worker, run_id)

    def counted(self: spares_module.Spares) -> spares_module.Spare:
        forks[0] += 1
        return fork(self)

    monkeypatch.setattr(kind, "claim", failing)
    monkeypatch.setattr(spares_module.Spares, "_fork", counted)
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    first_spare(executor)
    run_id = submit(nectar, 22)
    for _ in range(PASSES):
        with contextlib.suppress(RegistryUnavailable):
            executor._serve_once()
    executor._work_may_wait = True  # as serve_forever leaves it after a pass the registry failed
    assert forks[0] <= AHEAD, f"{forks[0]} spares forked in {PASSES} passes while the registry was down"

    down.unlink()

    run = run_to_its_end(executor, nectar, run_id)
    charged_once(nectar, run)


#: passes of the worker's loop while the registry is down
PASSES = 12


def test_a_spare_claims_no_run_queued_after_its_worker_was_told_to_stop(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
) -> None:
    """The worker is told to stop (as SIGTERM's handler does) and its loop makes a pass; a run is queued after; the
    worker's loop then drains and ends (``serve_forever``): the run stays PENDING, never claimed by the stopping
    worker or in its spare's name. The spare is stopped (SIGSTOP) from before the stop until the run is queued, as a
    loaded machine leaves a process unscheduled: what it has been told by then all arrives at once. On main the
    worker's loop claims, and claims nothing once told to stop. With wt55-dispatch3's work in progress the spare its
    worker allowed to claim, told to hold by the stopping worker's pass, claims all the same: its wait for the
    registry's word ends on the word (the run queued) and it claims without a look at what its worker said (the hold
    is read later, "moot"); the stopping worker then runs it through its drain."""
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    spare = first_spare(executor)
    executor._serve_once()  # no run: nothing claimed (wt55-dispatch3: the spare is allowed to claim, and waits)
    os.kill(spare.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: stopped(spare.pid), timeout=60)
        executor.stop()
        executor._serve_once()  # the stopping worker's pass
        run_id = submit(nectar, 23)
    finally:
        os.kill(spare.pid, signal.SIGCONT)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        executor.serve_forever()  # drains what runs, then ends
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    queued = nectar.runs.get(run_id)
    assert queued is not None and (queued.state, queued.attempt, queued.worker) == (RunState.PENDING, 0, None), queued


def listening(database_url: str) -> list[int]:
    """The server pids of the sessions of the database at ``database_url`` that listen for the registry's word."""
    with psycopg.connect(database_url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN %'"
        ).fetchall()
    return [row[0] for row in rows]


def test_spares_on_postgresql_hold_no_listening_connection_until_one_may_claim(
    quick: Settings,  # noqa: F811
    database_url: str,
) -> None:
    """Two ready spares of a worker on PostgreSQL, neither allowed to claim (the worker's loop has made no pass):
    none holds a session that listens for the registry's word (a connection of its own, held for good:
    ``PostgresRunStore._listen``), as on main, where only the worker's loop listens (one session a worker). With
    wt55-dispatch3's work in progress every spare listens as it sets itself up (``Executor._prepare``), whether or
    not it is ever allowed to claim, and keeps the session through the runs it then takes: a session more per spare
    and per attempt's process (AHEAD per slot, and each slot's running attempt) against the server's
    ``max_connections``, each sent every run's NOTIFY while it runs."""
    on_postgres = quick.replace(scheduler_url=None, database_url=database_url)
    executor = closed_at_end(Executor(on_postgres, concurrency=1))
    try:
        executor.spares.wanted()
        for _ in range(AHEAD):
            executor.spares.keep(1)

        def all_ready() -> bool:
            executor.spares.ready()  # what they said, read
            return len(executor.spares) == AHEAD and all(spare.ready for spare in executor.spares.spares)

        wait_until(all_ready, timeout=60)
        assert listening(database_url) == []
    finally:
        executor.spares.close()


def test_an_attempt_killed_as_its_step_runs_is_a_failure_of_its_attempt_whatever_its_worker_said_to_its_spare(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run whose step is running loses its attempt's process (-9): the attempt is failed, "killed by signal 9
    during attempt 1" (no retries: the run FAILED), as any death of an attempt that began. The run is queued as the
    worker goes idle (its spares' idle time passed: a clock the test moves), its spare stopped (SIGSTOP) meanwhile as a
    loaded machine leaves it. On main the idle worker lets its spares go, forks one for the run, claims and hands it
    over. On wt55-dispatch3 (e334dd0) the spare allowed to claim is told to hold as the worker goes idle, claims the run
    queued meanwhile all the same (the hold crosses its claim, ``_given``: "moot") and leaves the hold's frame unread
    in its socket; killed, its socket closes with bytes unread, which its worker reads as a reset (``spares.heard``:
    UNREAD), taken for a process that died before it read its run: the run is requeued uncounted
    (``Executor._requeue_unbegun``), its steps never released (luigid keeps them RUNNING in the dead worker's name
    until it times it out), and a task that kills its process runs again without end."""
    now = [time.monotonic()]
    executor, nectar = new_executor(concurrency=1), closed_at_end(Nectar(quick))
    spare = first_spare(executor)
    monkeypatch.setattr(executor.spares, "_clock", lambda: now[0])
    executor.spares.wanted()
    executor._serve_once()  # no run: nothing claimed (wt55-dispatch3: the spare is allowed to claim, and waits)
    step_gate = tmp_path / "held-gate"
    os.kill(spare.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: stopped(spare.pid), timeout=60)
        now[0] += quick.spare_idle + 1.0  # no run wanted for the spares' idle time
        executor._serve_once()  # the worker goes idle
        run = nectar.submit("quick", "quick_chain", "HeldTask", {"gate": str(step_gate)}).run
        assert run is not None
    finally:
        os.kill(spare.pid, signal.SIGCONT)
    try:

        def step_running() -> bool:
            executor._serve_once()
            return any(step.state == "RUNNING" for step in nectar.runs.steps(run.id))

        wait_until(step_running, timeout=60)
        running = nectar.runs.get(run.id)
        assert running is not None
        killed = pid_of(running)
        os.kill(killed, signal.SIGKILL)

        def settled() -> Run | None:  # its death handled: the attempt ended, or the run is another process's
            executor._serve_once()
            now = nectar.runs.get(run.id)
            return now if now is not None and (now.state != RunState.RUNNING or pid_of(now) != killed) else None

        after = wait_until(settled, timeout=60)
    finally:
        step_gate.touch()
    history = [(a.attempt, a.state, a.error) for a in nectar.runs.attempts(run.id)]
    assert (after.state, after.attempt) == (RunState.FAILED, 1), (after, history)
    assert "killed by signal 9 during attempt 1" in (after.error or ""), (after.error, history)
