"""Threads started ahead (:mod:`nectar.standby`): work handed to one runs on it, no thread started; an attempt's
lease beats, and luigi's worker pings its scheduler, on them."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import luigi.scheduler
import pytest

from nectar import standby
from nectar.leases import AttemptLease, process_name
from nectar.luigi_internals import new_worker
from nectar.luigid import LuigidRPC
from nectar.pings import PINGS
from nectar.registry import Run, RunState, RunStore
from nectar.relay import Relay, Turn
from tests.conftest import wait_until


@pytest.fixture
def kept() -> set[threading.Thread]:
    """This process's standby threads (kept for the rest of its life, as a spare's), and every thread alive now, once
    the process's loop of pings (:data:`~nectar.pings.PINGS`) left by an earlier test has ended (idle an interval)."""
    standby.keep(standby.ATTEMPT_THREADS)
    wait_until(lambda: not PINGS.serving)
    return set(threading.enumerate())


def test_work_handed_to_a_standby_thread_runs_on_it_and_starts_no_thread(kept: set[threading.Thread]) -> None:
    ran: list[threading.Thread] = []
    started = standby.start(lambda: ran.append(threading.current_thread()), "work")
    started.join()
    assert ran and ran[0] in kept and ran[0].name.startswith("nectar-standby")
    assert not started.is_alive()
    assert set(threading.enumerate()) == kept


def test_with_every_standby_thread_busy_work_gets_a_thread_of_its_own(kept: set[threading.Thread]) -> None:
    gate = threading.Event()
    held = [standby.hand(gate.wait) for _ in range(standby.ATTEMPT_THREADS)]
    try:
        assert all(held)
        assert standby.hand(gate.wait) is None
        ran: list[threading.Thread] = []
        standby.start(lambda: ran.append(threading.current_thread()), "its-own").join()
        assert ran[0].name == "its-own" and ran[0] not in kept
    finally:
        gate.set()
    for started in held:
        assert started is not None
        started.join()


def test_a_forked_process_does_not_hand_work_to_its_parents_standby_threads(kept: set[threading.Thread]) -> None:
    pid = os.fork()
    if pid == 0:  # the child has none of its parent's threads: it starts its own
        os._exit(0 if standby.hand(lambda: None) is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_of_a_relay_waits_on_no_lock_its_parents_thread_held_and_takes_over_no_parents_turn() -> None:
    """A thread of the parent holds the relay's lock as it forks (an ending heartbeat's turn), and the parent has an
    ended turn waiting: the child's first take-over neither waits for ever on the lock nor takes the turn, whose
    thread is not in the child (``nectar.forks``' lock made anew in children, its own process id beside the turn)."""
    relay: Relay[str] = Relay()
    relay.end(Turn("parent's", due=time.monotonic() + 3600))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with relay._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(60)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if relay.take_over(Turn("child's", due=0.0)) is None else 1)
    finally:
        release.set()
        holder.join()
    exits: list[int] = []

    def reaped() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            exits.append(os.waitstatus_to_exitcode(status))
        return bool(done)

    try:
        wait_until(reaped, 60)  # a child waiting on its copy of the held lock never exits
    finally:
        if not exits:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert exits == [0]
    # the parent's ended turn is still the parent's to hand over
    assert relay.take_over(Turn("parent's next", due=0.0)) is not None


def test_an_attempts_lease_beats_on_a_standby_thread(
    kept: set[threading.Thread], claimed: tuple[RunStore, Run]
) -> None:
    """The heartbeat renews the lease as before, on a thread started ahead; the lease's holder starts none."""
    runs, run = claimed
    leases: list[AttemptLease] = []
    during: list[set[threading.Thread]] = []

    def attempt() -> None:  # off the main thread: the lease sets no signal handler of pytest's process
        leases.append(AttemptLease(runs, run, interval=0.05))
        with leases[0]:
            wait_until(lambda: (now := runs.get(run.id)) is not None and now.heartbeat_at != run.heartbeat_at, 30)
            during.append(set(threading.enumerate()))

    holder = threading.Thread(target=attempt)
    holder.start()
    holder.join()
    assert during and during[0] - kept == {holder}
    assert not leases[0].lost


def test_luigis_worker_pings_its_scheduler_from_a_standby_thread(kept: set[threading.Thread]) -> None:
    """luigi's keep-alive loop runs on a thread started ahead, and pings as luigi's does; the worker's exit ends it
    (on that thread, not waited for)."""
    scheduler = luigi.scheduler.Scheduler()
    worker = new_worker(scheduler, "standby-probe", 1, ping_interval=0.01)
    with worker:
        wait_until(lambda: any(w["name"] == "standby-probe" for w in scheduler.worker_list()), 30)
        assert set(threading.enumerate()) == kept
    wait_until(lambda: not worker._keep_alive_thread.is_alive())


def test_with_every_standby_busy_luigis_worker_pings_from_a_thread_of_its_own_that_its_exit_waits_for(
    kept: set[threading.Thread],
) -> None:
    """No standby idle: luigi's keep-alive loop runs on a daemon thread of its own and pings as luigi's does; the
    worker's exit stops it and waits for that thread to end, as luigi's worker waits for its keep-alive thread."""
    gate = threading.Event()
    held = [standby.hand(gate.wait) for _ in range(standby.ATTEMPT_THREADS)]
    try:
        scheduler = luigi.scheduler.Scheduler()
        worker = new_worker(scheduler, "own-thread-probe", 1, ping_interval=0.01)
        with worker:
            wait_until(lambda: any(w["name"] == "own-thread-probe" for w in scheduler.worker_list()), 30)
            (own,) = set(threading.enumerate()) - kept
            assert own.daemon and worker._keep_alive_thread.is_alive()
        assert not own.is_alive() and not worker._keep_alive_thread.is_alive()  # waited for as the worker exited
    finally:
        gate.set()
    for started in held:
        assert started is not None
        started.join()


def test_with_luigid_the_keep_alive_starts_while_luigid_answers_the_workers_first_call_not_before(
    kept: set[threading.Thread], luigid: str
) -> None:
    """With luigid, luigi's keep-alive is handed to its standby thread once the worker's first call is written, while
    luigid answers it (a thread woken while the worker holds the GIL stalled it): not as the worker is entered (it
    was, before), and not before that call; it then pings as luigi's does, and the worker's exit ends it."""
    scheduler = LuigidRPC(luigid)
    worker = new_worker(scheduler, "standby-luigid-probe", 1, ping_interval=0.01)
    alive_as_called: list[bool] = []
    post = scheduler.post

    def noted(path: str, form: dict[str, str]) -> bytes | dict[str, Any]:
        alive_as_called.append(worker._keep_alive_thread.is_alive())
        return post(path, form)

    scheduler.post = noted
    with worker:
        assert not worker._keep_alive_thread.is_alive()
        scheduler.ping(worker="standby-luigid-probe")
        assert worker._keep_alive_thread.is_alive()
        wait_until(lambda: len(alive_as_called) > 1)  # its own ping
        # the first call saw no keep-alive; every later one is the keep-alive's own ping (it pings every 10 ms: on a
        # loaded machine one came before this test read the list, which failed when it read exactly [False] here)
        assert alive_as_called[0] is False and all(alive_as_called[1:]), alive_as_called
        assert set(threading.enumerate()) == kept
    wait_until(lambda: not worker._keep_alive_thread.is_alive())


def test_a_worker_that_ends_before_its_first_call_to_luigid_never_starts_its_keep_alive(
    kept: set[threading.Thread], luigid: str
) -> None:
    scheduler = LuigidRPC(luigid)
    worker = new_worker(scheduler, "standby-luigid-unused", 1, ping_interval=0.01)
    with worker:
        pass
    scheduler.ping(worker="standby-luigid-unused")  # its start is void: it was stopped
    assert not worker._keep_alive_thread.is_alive()
    assert set(threading.enumerate()) == kept
    ran: list[threading.Thread] = []
    standby.start(lambda: ran.append(threading.current_thread()), "work").join()
    assert ran[0] in kept  # no standby thread was left busy with it


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[standby.Started]:
    """Each work handed to a standby thread from now on (as its :class:`~nectar.standby.Started`)."""
    started: list[standby.Started] = []
    hand = standby.hand

    def counted(work: Callable[[], object]) -> standby.Started | None:
        one = hand(work)
        if one is not None:
            started.append(one)
        return one

    monkeypatch.setattr(standby, "hand", counted)
    return started


def test_the_next_lease_of_a_process_takes_the_ended_leases_heartbeat_over_unwoken(
    kept: set[threading.Thread],
    claimed: tuple[RunStore, Run],
    handed: list[standby.Started],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ended lease's heartbeat on a standby thread is not woken to end: the process's next lease takes that thread
    over as it waits (no work handed to a standby thread, no thread started), and it beats for the new lease, on its
    own beat or when woken (here: a maximum runtime that comes before its next beat). A lease taken over ends as any:
    at its beat, it beats no more."""
    runs, run = claimed
    beats: list[threading.Thread] = []
    heartbeat = runs.heartbeat

    def recorded(run_id: str, attempt: int, worker: str, lease_timeout: float | None = None) -> bool:
        beats.append(threading.current_thread())
        return heartbeat(run_id, attempt, worker, lease_timeout)

    monkeypatch.setattr(runs, "heartbeat", recorded)
    during: list[set[threading.Thread]] = []
    ended: list[int] = []

    def attempts() -> None:  # off the main thread: the leases set no signal handler of pytest's process
        with AttemptLease(runs, run, interval=3600.0):  # no beat of its own in this test
            pass
        second = AttemptLease(runs, run, interval=3600.0)
        with second:
            second.limit(1800.0)  # before its next beat: the heartbeat looks again now, and renews
            wait_until(lambda: len(beats) == 1)
            during.append(set(threading.enumerate()))
        with AttemptLease(runs, run, interval=0.01):  # sooner than the second's beat: woken, it beats, then ends
            wait_until(lambda: len(beats) >= 2)
        ended.append(len(beats))

    holder = threading.Thread(target=attempts)
    holder.start()
    holder.join()
    assert len(handed) == 1, handed  # the first lease's only: the later ones took its thread over
    assert set(beats) == {beats[0]} and beats[0] in kept and beats[0].name.startswith("nectar-standby")
    assert during and during[0] - kept == {holder}
    handed[0].join(60)  # the last lease ended, none took its heartbeat over: it ends at its beat
    assert not handed[0].is_alive()
    assert ended and len(beats) <= ended[0] + 1  # a beat under way as it ended, at most


def held_beats(
    runs: RunStore, held: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event, list[str]]:
    """The registry's heartbeats, each run's id noted as it beats; the beat of run ``held`` sets the first event and
    is held under way until the test sets the second."""
    heartbeat = runs.heartbeat
    beating, gate = threading.Event(), threading.Event()
    beats: list[str] = []

    def beat(run_id: str, attempt: int, worker: str, lease_timeout: float | None = None) -> bool:
        if run_id == held:
            beating.set()
            gate.wait()
        beats.append(run_id)
        return heartbeat(run_id, attempt, worker, lease_timeout)

    monkeypatch.setattr(runs, "heartbeat", beat)
    return beating, gate, beats


def ended_as_it_beat(runs: RunStore, run: Run, beating: threading.Event) -> AttemptLease:
    """An attempt's lease of ``run`` that ends, its run recorded DONE, while its beat is under way (held)."""
    lease = AttemptLease(runs, run, interval=3600.0)
    with lease:
        lease.limit(1800.0)  # before its next beat: the heartbeat beats now, and is held in it
        wait_until(beating.is_set)
        assert runs.complete(run.id, run.attempt)  # the attempt's end recorded as its beat is under way
    return lease


def test_a_lease_that_takes_over_a_heartbeat_under_way_whose_renewal_fails_as_its_run_ended_still_beats(
    kept: set[threading.Thread],
    claimed: tuple[RunStore, Run],
    handed: list[standby.Started],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ended lease's beat was under way as its run was recorded DONE (its renewal then fails: the run is no longer
    RUNNING) and the next lease took its thread over: that thread goes on beating for the next lease, whose lease
    would otherwise run out while its attempt is healthy (the thread ended with the ended lease's failed renewal)."""
    runs, run = claimed
    other = dataclasses.replace(run, id=uuid.uuid4().hex, key=uuid.uuid4().hex, state=RunState.PENDING, attempt=0)
    other = dataclasses.replace(other, worker=None, started_at=None, heartbeat_at=None)
    runs.submit(other)
    second = runs.claim(process_name(), other.id)
    assert second is not None and second.state == RunState.RUNNING
    # the first lease's beat, held under way until the next lease took its thread over
    beating, gate, beats = held_beats(runs, run.id, monkeypatch)
    took_over: list[AttemptLease] = []

    def attempts() -> None:  # off the main thread: the leases set no signal handler of pytest's process
        ended_as_it_beat(runs, run, beating)
        lease = AttemptLease(runs, second, interval=0.05)
        with lease:
            took_over.append(lease)
            gate.set()
            wait_until(lambda: second.id in beats or not handed[0].is_alive())

    holder = threading.Thread(target=attempts)
    holder.start()
    holder.join()
    assert took_over, "the attempts failed (see the thread's exception)"
    assert second.id in beats, "the heartbeat thread ended with the ended lease: the next lease never beats"
    assert not took_over[0].lost
    assert len(handed) == 1, handed  # the first lease's only: the second took its thread over
    handed[0].join(60)  # the second lease ended, none took its heartbeat over: it ends at its beat
    assert not handed[0].is_alive()


def test_a_lease_that_ended_as_its_beat_renewed_it_is_not_reported_lost(
    kept: set[threading.Thread],
    claimed: tuple[RunStore, Run],
    handed: list[standby.Started],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A beat under way as its attempt ended (its run recorded DONE: the renewal fails) and no lease took its thread
    over: the thread ends without a warning that the run "lost its lease (cancelled or reclaimed): stopping it" (a
    run that succeeded was reported lost in the worker's log)."""
    runs, run = claimed
    beating, gate, _ = held_beats(runs, run.id, monkeypatch)
    ended: list[AttemptLease] = []

    def attempt() -> None:  # off the main thread: the lease sets no signal handler of pytest's process
        ended.append(ended_as_it_beat(runs, run, beating))

    holder = threading.Thread(target=attempt)
    with caplog.at_level(logging.WARNING, logger="nectar.leases"):
        holder.start()
        holder.join()
        assert ended, "the attempt failed (see the thread's exception)"
        gate.set()
        handed[0].join(60)
    assert not handed[0].is_alive()
    assert [r.getMessage() for r in caplog.records if "lost its lease" in r.getMessage()] == []
