"""A process forked while another thread of its parent is inside a SQLite transaction can still write to the
registry: the fork waits for the transaction to end (nectar.forks)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar import forks
from nectar.forks import ForkGate
from nectar.registry import Step, sqlite
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.helpers.forks import said_by_a_child_forked_while_held
from tests.helpers.registries import closed_at_end
from tests.helpers.threads import at_line, waits_in
from tests.nectar.test_runs import new_run

REPOSITORY = Path(__file__).resolve().parents[2]
#: seconds that only fail a hung test (SQLite's own busy timeout is 30 s)
PATIENCE = 120.0

#: events set by every fork of this process, before the registry's gate is asked (hooks registered later run first)
_set_at_fork: list[threading.Event] = []


def _set_events() -> None:
    for event in _set_at_fork:
        event.set()


os.register_at_fork(before=_set_events)


def _record_start(runs: SQLiteRunStore, step: Step, answer: Connection) -> None:
    """A forked step's first write: its start (over a connection of the child's own)."""
    try:
        runs.record_steps([step])
    except Exception as exc:
        answer.send(f"{type(exc).__name__}: {exc}")
    else:
        answer.send("recorded")


def test_a_step_forked_while_the_heartbeat_thread_is_in_a_transaction_records_its_start(tmp_path: Path) -> None:
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run, _ = runs.submit(new_run())
    claimed = runs.claim("attempt")
    assert claimed is not None
    in_transaction, commit = threading.Event(), threading.Event()

    def heartbeat() -> None:  # as the attempt's heartbeat renews its lease, and is caught at it by a fork
        with runs._db() as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time(), run.id))
            in_transaction.set()
            commit.wait(PATIENCE)

    beat = threading.Thread(target=heartbeat, name="heartbeat")
    beat.start()
    assert in_transaction.wait(PATIENCE), "the heartbeat never opened its transaction"
    step = Step(run.id, "ATask_0", "ATask", None, "RUNNING", True, None)
    answer, sent = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_record_start, args=(runs, step, sent))
    _set_at_fork.append(commit)  # the heartbeat may commit once the fork has begun, not before
    try:
        child.start()  # as luigi's worker starts a TaskProcess
    finally:
        _set_at_fork.remove(commit)
        commit.set()
    beat.join()

    assert answer.poll(PATIENCE), "the forked step never answered"
    assert answer.recv() == "recorded"
    child.join(PATIENCE)
    assert child.exitcode == 0
    assert [(s.task_id, s.state) for s in runs.steps(run.id)] == [("ATask_0", "RUNNING")]


def use(gate: ForkGate, how: str, work: Callable[[], object]) -> None:
    """``work()`` inside ``gate``: ``with gate.inside():`` or by ``gate.call`` (a registry read's way)."""
    if how == "with":
        with gate.inside():
            work()
    else:
        gate.call(lambda _: work(), None)


@pytest.mark.parametrize("how", ["with", "call"])
def test_a_fork_waits_for_the_thread_inside_and_holds_the_next_one_until_it_is_done(how: str) -> None:
    gate = ForkGate()
    entered, leave, forked, done, second_in = (threading.Event() for _ in range(5))
    order: list[str] = []

    def inner() -> None:
        entered.set()
        leave.wait(PATIENCE)

    def outer() -> None:
        use(gate, how, inner)  # a use nested in another: the fork waits for the outermost to end
        order.append("first left")

    def first() -> None:
        use(gate, how, outer)

    def fork() -> None:  # what os.fork does around the fork itself
        gate.before_fork()
        order.append("forked")
        use(gate, how, lambda: order.append("forker in"))  # the forking thread's own hooks may use the registry
        forked.set()
        done.wait(PATIENCE)
        order.append("fork done")
        gate.after_fork_in_parent()

    def came_in() -> None:
        order.append("second in")
        second_in.set()

    def second() -> None:
        use(gate, how, came_in)

    threads = [threading.Thread(target=first), threading.Thread(target=fork), threading.Thread(target=second)]
    threads[0].start()
    assert entered.wait(PATIENCE)
    threads[1].start()
    # the fork either went on, or waits in before_fork: the point at which it could have gone on and did not
    wait_until(lambda: forked.is_set() or waits_in(threads[1], "before_fork"), timeout=PATIENCE)
    assert not forked.is_set(), "the fork went on while a thread was inside"
    leave.set()
    assert forked.wait(PATIENCE), "the fork never went on after the last thread left"
    threads[2].start()
    # it either came in, or waits for the gate's lock, which the fork holds: the point at which it could have come in
    entering = ("__enter__", "with gate._lock:")
    wait_until(lambda: second_in.is_set() or (at_line(threads[2]) == entering and gate._lock.locked()), PATIENCE)
    assert not second_in.is_set(), "a thread came in during the fork"
    done.set()
    assert second_in.wait(PATIENCE), "the gate never opened again after the fork"
    for thread in threads:
        thread.join(PATIENCE)

    assert order == ["first left", "forked", "forker in", "fork done", "second in"]


@pytest.mark.parametrize("how", ["with", "call"])
def test_with_no_fork_being_made_a_thread_enters_and_leaves_the_gate_without_its_lock(how: str) -> None:
    """A registry read goes through the gate: with no fork under way, entering and leaving take none of its lock
    (they took it twice), so a thread comes and goes while another holds it."""
    gate = ForkGate()
    came_and_went = threading.Event()

    def enter_twice() -> None:
        use(gate, how, lambda: use(gate, how, lambda: None))
        came_and_went.set()

    with gate._lock:
        thread = threading.Thread(target=enter_twice, daemon=True)
        thread.start()
        went = came_and_went.wait(PATIENCE)
    thread.join(PATIENCE)
    assert went, "a thread waited on the gate's lock to enter or leave it, with no fork being made"


def test_a_process_forked_while_another_thread_opens_its_turn_at_the_file_can_write(tmp_path: Path) -> None:
    """A module's lock held by a thread of the parent at the fork (here the one a process takes to open its turn at
    a registry file, outside the fork gate: ``wait_for_work`` looks at the turn's holder) is held for ever in the
    child, where that thread does not exist: its first write would wait on it for ever, a stray copy of its parent
    that only a SIGKILL ends."""
    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))

    def first_write() -> bytes:  # this process's turn at the file opened
        runs.submit(new_run())
        return b"written"

    # as a thread opening this process's turn at another file, caught at it by the fork
    said = said_by_a_child_forked_while_held(sqlite._OPENING, first_write)

    assert said == b"written", "the forked child never wrote: it waits on a lock its parent's thread held"


def test_the_pid_a_process_keeps_is_its_own_in_every_child_forked_from_it_and_in_theirs() -> None:
    """``nectar.forks.pid`` (the registry's look at whether it was forked since it opened its connections) answers
    without a system call, and a forked child's, and its own child's, is theirs, not their parent's."""
    assert forks.pid() == os.getpid()
    said, told = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            grandchild = os.fork()
            if grandchild == 0:
                os.write(told, f"{forks.pid()}={os.getpid()}\n".encode())
                os._exit(0)
            os.waitpid(grandchild, 0)
            os.write(told, f"{forks.pid()}={os.getpid()}\n".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(told)
    with os.fdopen(said) as pipe:
        lines = pipe.read().split()
    assert os.waitpid(child, 0)[1] == 0
    assert len(lines) == 2 and all(kept == real for kept, _, real in (line.partition("=") for line in lines)), lines
    assert lines[1] == f"{child}={child}"
    assert forks.pid() == os.getpid()


#: what each fork through :data:`TWO_FORKS` saw as it was made (its gate kept): the forking thread, the thread the
#: gate noted as forking, the other threads inside
SEEN_AT_FORKS: list[tuple[int, int | None, set[int]]] | None = None


def _seen_at_fork() -> None:
    if SEEN_AT_FORKS is not None:
        SEEN_AT_FORKS.append(
            (threading.get_ident(), TWO_FORKS._forking, set(TWO_FORKS._depths) - {threading.get_ident()})
        )


# registered before the gate: a hook before a fork runs after those registered later, so after the gate's own
os.register_at_fork(before=_seen_at_fork)
#: a gate every fork of this process goes through (open, and so passed at once, but in the test below)
TWO_FORKS = ForkGate()
TWO_FORKS.register()


def test_two_threads_forking_at_once_each_fork_with_the_gate_its_own() -> None:
    """Two threads fork (real forks) while a third is inside the gate: each fork waits for it, and is made with the
    gate noted as its own, one after the other. The second to ask noted itself over the first, which waited: the
    first forked noted as the second, and the second, once the first's end cleared the note, forked noted by no one
    (a thread that came in meanwhile was inside during its fork)."""
    global SEEN_AT_FORKS
    entered, leave = threading.Event(), threading.Event()
    exits: list[int] = []

    def inside() -> None:
        with TWO_FORKS.inside():
            entered.set()
            leave.wait(PATIENCE)

    def fork() -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child only exits)
            os._exit(0)
        exits.append(os.waitpid(pid, 0)[1])

    holder = threading.Thread(target=inside)
    forkers = [threading.Thread(target=fork), threading.Thread(target=fork)]
    SEEN_AT_FORKS = []
    try:
        holder.start()
        assert entered.wait(PATIENCE)
        for forker in forkers:
            forker.start()
            wait_until(partial(waits_in, forker, "before_fork"), timeout=PATIENCE)
        leave.set()
        for thread in (holder, *forkers):
            thread.join(PATIENCE)
        seen = SEEN_AT_FORKS
    finally:
        SEEN_AT_FORKS = None
        leave.set()

    assert exits == [0, 0]
    assert sorted(forker for forker, _, _ in seen) == sorted(forker.ident or 0 for forker in forkers)
    assert [(noted, others) for forker, noted, others in seen] == [(forker, set()) for forker, _, _ in seen]


def test_a_thread_inside_the_gate_forks_while_another_fork_waits_for_it_to_leave() -> None:
    """A thread outside asks to fork while another is inside: its fork waits for that one to leave. The one inside
    then forks itself (its own hooks, from inside): it forks at once, with the gate its own, and the first is noted
    again after it, and forks once the other has left. It waited for the first fork to be made, which waited for it to
    leave: neither ever went on. (The gate's hooks are called here as a fork calls them: a gate stuck so is this
    test's own, not one every fork of the test's process goes through.)"""
    gate = ForkGate()
    entered, fork_inside, leave = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[int, int | None, set[int]]] = {}

    def forked(name: str) -> None:
        me = threading.get_ident()
        gate.before_fork()
        seen[name] = (me, gate._forking, set(gate._depths) - {me})
        gate.after_fork_in_parent()

    def inside() -> None:
        with gate.inside():
            entered.set()
            fork_inside.wait(PATIENCE)
            forked("inside")
            seen["after"] = (threading.get_ident(), gate._forking, set())
            leave.wait(PATIENCE)

    holder = threading.Thread(target=inside, daemon=True)  # daemon: left stuck where the gate deadlocks
    outside = threading.Thread(target=forked, args=("outside",), daemon=True)
    try:
        holder.start()
        assert entered.wait(PATIENCE)
        outside.start()
        wait_until(partial(waits_in, outside, "before_fork"), timeout=PATIENCE)
        fork_inside.set()
        wait_until(lambda: "after" in seen or not holder.is_alive(), timeout=PATIENCE)
        assert "outside" not in seen, "the fork outside was made while a thread was inside"
        leave.set()
        outside.join(PATIENCE)
        holder.join(PATIENCE)
    finally:
        fork_inside.set()
        leave.set()

    assert seen["inside"] == (holder.ident, holder.ident, set())
    assert seen["after"] == (holder.ident, outside.ident, set()), "the waiting fork was not noted again"
    assert seen["outside"] == (outside.ident, outside.ident, set())
    assert not outside.is_alive() and not holder.is_alive()


#: a process whose two threads are both inside the registry's fork gate and both fork (``os.fork``: the gate's hooks
#: as every fork of the process runs them), in either order, each child exiting at once: it prints each fork's exit
#: status, in the order made, and "done" once both returned
TWO_FORK_FROM_INSIDE = """
import os, threading, time
from nectar.forks import SQLITE

entered = threading.Barrier(3)
made = []

def forks():
    with SQLITE.inside():
        entered.wait()
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        made.append(os.waitpid(pid, 0)[1] >> 8)

first, second = threading.Thread(target=forks, daemon=True), threading.Thread(target=forks, daemon=True)
first.start()
second.start()
entered.wait()
print("inside", flush=True)
deadline = time.monotonic() + 60
for forker in (first, second):
    forker.join(max(0.0, deadline - time.monotonic()))
print(made, "done" if not first.is_alive() and not second.is_alive() else "stuck", flush=True)
"""


def test_two_threads_inside_the_gate_that_both_fork_each_fork_once() -> None:
    """Two threads inside the gate both fork: the first's fork waits for the other thread to leave, and the second's
    (forking from inside, a thread of the gate's own waiting for it) waited for the first to leave, which waited for
    it: both stuck for ever, and every later fork of the process. Real threads and real forks, in a process of its
    own (a stuck gate would be every fork's of this test session); its 60 s per thread only fail a hung gate."""
    argv = [sys.executable, "-c", TWO_FORK_FROM_INSIDE]
    said = subprocess.run(
        argv, env={**os.environ, **lifeline_env()}, capture_output=True, text=True, timeout=PATIENCE, cwd=REPOSITORY
    )
    assert said.stdout.splitlines() == ["inside", "[7, 7] done"], said


@pytest.mark.parametrize("outer_is_along", [True, False], ids=["along-then-gate", "gate-then-along"])
def test_a_thread_inside_one_gate_enters_another_made_along_it_while_a_fork_waits_for_it(outer_is_along: bool) -> None:
    """A thread inside one of two gates made along each other (a chain file executing inside IMPORTS that uses the
    registry, inside SQLITE) enters the other while a fork waits for it: the fork waits for it already, so it goes in
    at once, leaves both, and the fork goes on. It stepped back out of the second to wait for the fork to end, which
    waited for it to leave the first: both stuck for ever, and every later fork of the process."""
    gate = ForkGate()
    along = ForkGate(along=gate)
    outer, inner = (along, gate) if outer_is_along else (gate, along)
    inside = threading.Event()
    order: list[str] = []

    def user() -> None:
        with outer.inside():
            inside.set()
            wait_until(lambda: gate._forking is not None, timeout=PATIENCE)  # the fork is noted, waiting for it
            with inner.inside():
                order.append("nested")
            order.append("left inner")
        order.append("left outer")

    def fork() -> None:  # what os.fork does around the fork itself
        gate.before_fork()
        order.append("forked")
        gate.after_fork_in_parent()

    using, forking = threading.Thread(target=user, daemon=True), threading.Thread(target=fork, daemon=True)
    using.start()
    assert inside.wait(PATIENCE)
    forking.start()
    for thread in (using, forking):
        thread.join(PATIENCE)
    assert not using.is_alive() and not forking.is_alive(), f"stuck: {order}"
    assert order == ["nested", "left inner", "left outer", "forked"]


def test_a_fork_waits_for_another_thread_opening_a_registry(tmp_path: Path) -> None:
    """A thread that makes a registry (its schema checked over a connection it opens and closes) is inside the
    fork gate meanwhile: a fork made then waits for it to be done. It was outside: the fork copied SQLite mid-open
    (its own mutexes, the lock ``opening()`` takes), and a child's first open of the file could wait for ever."""
    opened, release = threading.Event(), threading.Event()

    class Slow(SQLiteRunStore):
        def _open(self) -> sqlite3.Connection:
            conn = super()._open()
            opened.set()  # its first statement run: SQLite's first lock on the WAL index held
            release.wait(PATIENCE)
            return conn

    maker = threading.Thread(target=lambda: closed_at_end(Slow(tmp_path / "runs.sqlite3")), daemon=True)
    maker.start()
    assert opened.wait(PATIENCE)
    assert _made_after(release, maker) == [1], "a fork was made while another thread opened the registry"


#: a process where a thread inside the registry's gate hands work to a ``ThreadPoolExecutor`` while a fork waits
#: for it (``concurrent.futures.thread`` imported after :mod:`nectar.forks`, as a chain's code or luigi's may): it
#: prints the child's exit status, then whether the thread is done
SUBMIT_WHILE_A_FORK_WAITS = """
import os, threading, time
from nectar.forks import SQLITE
from concurrent.futures import ThreadPoolExecutor

pool = ThreadPoolExecutor(1)
inside = threading.Event()

def submits():
    with SQLITE.inside():
        inside.set()
        deadline = time.monotonic() + 60  # only a hung fork's
        while SQLITE._forking is None and time.monotonic() < deadline:
            time.sleep(0.001)
        pool.submit(int).result()

user = threading.Thread(target=submits, daemon=True)
user.start()
inside.wait()
child = os.fork()
if child == 0:
    os._exit(7)
print(os.waitpid(child, 0)[1] >> 8, flush=True)
user.join(60)
print("stuck" if user.is_alive() else "done", flush=True)
"""


def test_a_fork_waits_at_the_gate_before_it_takes_another_librarys_fork_lock() -> None:
    """A fork waits at the registry's gate holding no lock of another library's own hooks: a hook registered later
    runs before (``concurrent.futures.thread`` takes its global lock, which every ``submit`` takes). It took it,
    then waited for a thread inside the gate, which waited at ``submit`` for that lock: both for ever."""
    argv = [sys.executable, "-c", SUBMIT_WHILE_A_FORK_WAITS]
    said = subprocess.run(
        argv, env={**os.environ, **lifeline_env()}, capture_output=True, text=True, timeout=PATIENCE, cwd=REPOSITORY
    )
    assert said.stdout.splitlines() == ["7", "done"], said


def test_a_fork_waits_for_another_thread_closing_a_registrys_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that closes a registry is inside the fork gate while it closes the connections the process holds: a
    fork made then waits for it to be done. It was outside: the fork copied SQLite mid-close (its own mutexes, a
    lock on the WAL index being dropped). A close that pauses cannot be had from SQLite itself: a connection class of
    the test's own (``sqlite3.connect``'s ``factory``) pauses in its ``close``."""
    closing, release = threading.Event(), threading.Event()

    class SlowToClose(sqlite3.Connection):
        def close(self) -> None:
            if not closing.is_set():  # the first close of the registry's: held there
                closing.set()
                release.wait(PATIENCE)
            super().close()

    runs = closed_at_end(SQLiteRunStore(tmp_path / "runs.sqlite3"))
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", partial(connect, factory=SlowToClose))
    runs.submit(new_run())  # the process's writing connection, a SlowToClose
    monkeypatch.setattr(sqlite3, "connect", connect)
    closer = threading.Thread(target=runs.close, daemon=True)
    closer.start()
    assert closing.wait(PATIENCE)
    assert _made_after(release, closer) == [1], "a fork was made while another thread closed the registry's connections"


def _made_after(release: threading.Event, busy: threading.Thread) -> list[int]:
    """What a child forked by another thread while ``busy`` is held (until ``release``) in what the fork gate guards
    says: 1 if the fork was made after the release (it waited at the gate), 0 if made before (mid-use)."""
    said: list[int] = []

    def fork() -> None:
        child = os.fork()
        if child == 0:  # the child's copy of the event is as it was at the fork: whether the use was over then
            os._exit(1 if release.is_set() else 0)
        said.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))

    forking = threading.Thread(target=fork, daemon=True)
    forking.start()
    # the fork either waits at the gate for the use to end, or was made already, mid-use
    wait_until(lambda: bool(said) or waits_in(forking, "before_fork"), timeout=PATIENCE)
    release.set()
    for thread in (forking, busy):
        thread.join(PATIENCE)
    return said
