"""A luigid asked to stop is never killed while it saves its state (nectar.stops.await_stop, as ``nectar serve``
awaits it): past its stop timeout, a save under way is waited for while it moves, and while the disk flushes it once
written; one that stopped moving is killed, and the state file left is the last whole one. A stop asked again while
it saves is the same stop (no second save); and a part is awaited on its exit, not looked at again and again."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import REPO, Processes, freeze, lifeline_env, send, waitfor
from nectar.luigid import SchedulerClient
from nectar.stops import FLUSHING, SAVING, Save, await_stop, luigid_saving
from tests.nectar.test_luigid_state import WORKER, saved_tasks, start

#: the stop timeout the test's luigid is given (seconds on the test's own clock, which only the test moves)
STOP_TIMEOUT = 20.0
#: a deadline years away, in seconds
FAR = 1e9
#: tasks, each with many parameters: a save of them takes a while (~0.3 s alone), long enough to be caught midway
TASKS, PARAMS = 400, 400


class Clock:
    """A clock the test moves, counting its reads (each look of a waiter past its deadline reads it once)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def looked_again(self, awaiting: threading.Thread) -> None:
        """Wait until ``awaiting`` has looked at least once more on the clock as it is now (or ended)."""
        reads = self.reads
        waitfor(lambda: self.reads >= reads + 2 or not awaiting.is_alive(), 60, "the waiter to look again")


def fill(client: SchedulerClient, prefix: str) -> set[str]:
    """:data:`TASKS` DONE tasks named ``<prefix>_<n>`` added to luigid; their ids."""
    ids = {f"{prefix}_{n}" for n in range(TASKS)}
    for task_id in sorted(ids):
        params = {f"p{j}": f"{task_id}-{j}" for j in range(PARAMS)}
        added = {"family": "Probe", "module": "probes", "params": params, "deps": [], "runnable": True}
        client.call("add_task", worker=WORKER, status="DONE", task_id=task_id, **added)
    return ids


def awaited(proc: subprocess.Popen[bytes], saving: Callable[[], Save | None], clock: Clock) -> threading.Thread:
    """``proc`` (luigid, asked to stop) awaited as serve awaits it, its deadline :data:`STOP_TIMEOUT` passed on
    ``clock`` (set so here: before it, the waiter sleeps until the exit, whatever the clock does), in a thread."""
    clock.now = STOP_TIMEOUT + 1
    awaiting = threading.Thread(target=await_stop, args=("luigid", proc, STOP_TIMEOUT, STOP_TIMEOUT, saving, clock))
    awaiting.start()
    return awaiting


@contextmanager
def frozen_mid_save(proc: subprocess.Popen[bytes], state: Path, clock: Clock) -> Iterator[threading.Thread]:
    """``proc`` (luigid) asked to stop, frozen (SIGSTOP) as soon as its save of its state is seen under way, then
    awaited past its deadline (:func:`awaited`, yielded); thawed at the end, whatever happened."""
    saving = luigid_saving(state / "state.pickle")  # made before the stop, as serve makes it
    proc.send_signal(signal.SIGTERM)
    awaiting: threading.Thread | None = None
    try:
        caught_mid_save(proc, saving)
        awaiting = awaited(proc, saving, clock)
        yield awaiting
    finally:
        send(proc.pid, signal.SIGCONT)
        if awaiting is not None:
            awaiting.join(60)


def caught_mid_save(proc: subprocess.Popen[bytes], saving: Callable[[], Save | None]) -> None:
    """``proc`` (luigid, asked to stop) frozen (SIGSTOP) as soon as its save is seen under way."""
    waitfor(lambda: saving() is not None or proc.poll() is not None, 60, "luigid to begin its save", interval=0)
    freeze(proc.pid)
    assert proc.poll() is None and saving() is not None, "luigid's save ended before it was caught"


def test_luigid_saving_its_state_past_its_stop_timeout_is_waited_for_not_killed(
    processes: Processes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """luigid holding many tasks, frozen midway through the save its stop makes: past its stop timeout it is not
    killed (serve killed it there, and every task since its start was lost) but waited for, said at WARNING; thawed,
    it ends its save and exits 0, every task saved."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state)
    held = fill(client, "Probe")
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="nectar.supervisor"), frozen_mid_save(proc, state, clock) as awaiting:
        said = "luigid did not stop within 20s: it is saving its state"
        waitfor(lambda: said in caplog.text or not awaiting.is_alive(), 60, "serve to wait for the save, or kill")
        assert proc.poll() is None and awaiting.is_alive(), caplog.text  # not killed: waited for
        assert said in caplog.text
    assert not awaiting.is_alive()
    assert proc.returncode == 0
    assert saved_tasks(state) == held
    assert "killing it" not in caplog.text


def test_luigid_whose_save_stopped_moving_is_killed_and_the_last_whole_state_kept(
    processes: Processes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A save that makes no progress for the stop timeout past the deadline (luigid frozen midway) is killed then,
    said at ERROR: the state file is the one luigid's last whole save left (the first luigid's), not a cut one."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state)
    first = fill(client, "First")
    processes.stop(proc)
    proc, client = start(processes, state)
    fill(client, "Second")
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="nectar.supervisor"), frozen_mid_save(proc, state, clock) as awaiting:
        waitfor(lambda: "it is saving its state" in caplog.text, 60, "serve to say it waits for luigid's save")
        clock.now = 2 * STOP_TIMEOUT + 2  # no progress since, for longer than the stop timeout
        awaiting.join(60)
        assert not awaiting.is_alive()
    assert proc.returncode == -signal.SIGKILL
    assert "luigid's save of its state made no progress within 20s; killing it" in caplog.text
    assert saved_tasks(state) == first


def test_luigid_whose_written_state_the_disk_is_slow_to_flush_is_waited_for_not_killed(
    processes: Processes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """luigid's state all written, its ``fsync`` held (as a loaded disk holds it) for many stop timeouts past the
    deadline: no byte moves, yet it is not killed (serve killed it at the stop timeout after its last byte, the state
    written and lost, and a kill cannot end an ``fsync`` sooner): waited for, said at WARNING; let go, it renames its
    save into place and exits 0, every task saved."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state)
    held = fill(client, "Probe")
    saving = luigid_saving(state / "state.pickle")
    gate = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.syscall_gate", str(proc.pid)],
        stdin=subprocess.PIPE,  # closed to let luigid go on
        stdout=subprocess.PIPE,  # what it says
        env={**os.environ, **lifeline_env()},
        cwd=REPO,
    )
    clock = Clock()
    awaiting: threading.Thread | None = None
    try:
        assert gate.stdin is not None and gate.stdout is not None
        assert gate.stdout.readline() == b"attached\n"
        proc.send_signal(signal.SIGTERM)
        assert gate.stdout.readline() == b"held\n"  # in its fsync, every byte written
        with caplog.at_level(logging.WARNING, logger="nectar.supervisor"):
            awaiting = awaited(proc, saving, clock)
            said = "luigid did not stop within 20s: it is saving its state"
            waitfor(lambda: said in caplog.text or not awaiting.is_alive(), 60, "serve to wait for the save")
            for timeouts in range(2, 5):  # no progress in bytes for three stop timeouts more
                clock.now = timeouts * STOP_TIMEOUT + 2
                clock.looked_again(awaiting)
            assert proc.poll() is None and awaiting.is_alive(), caplog.text
            assert "luigid has written its state (" in caplog.text
    finally:
        gate.communicate(timeout=60)  # its stdin closed: luigid goes on
        if awaiting is not None:
            awaiting.join(60)
    assert awaiting is not None and not awaiting.is_alive()
    assert proc.returncode == 0
    assert saved_tasks(state) == held
    assert "killing it" not in caplog.text


def test_a_stop_asked_again_while_luigid_saves_is_the_same_stop_not_a_second_save(
    processes: Processes, tmp_path: Path
) -> None:
    """A second SIGTERM while luigid saves (serve's stop, then the kernel's as serve dies) ran luigi's handler again
    inside the first save: a second save, whole, then its exit cut the first (the stop's longest part twice). Now
    the save under way is the one put in place."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state)
    held = fill(client, "Probe")
    saving = luigid_saving(state / "state.pickle")
    proc.send_signal(signal.SIGTERM)
    try:
        caught_mid_save(proc, saving)
        [under_way] = [path for path in state.iterdir() if path.name.endswith((SAVING, FLUSHING))]
        first = under_way.stat().st_ino
        proc.send_signal(signal.SIGTERM)  # handled, if at all, once thawed: mid-save
    finally:
        send(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=60) == 0
    assert (state / "state.pickle").stat().st_ino == first  # the first save's file, not a second one's
    assert saved_tasks(state) == held


def test_a_part_asked_to_stop_is_awaited_on_its_exit_not_looked_at_before_its_deadline(tmp_path: Path) -> None:
    """Before its deadline, a part is awaited on its exit itself: serve looked at it, and at the clock, every 0.1 s
    per part while they stopped. A clock that jumps past the deadline once read: a look before the exit kills. The
    deadline is far (a drain grace of years): one sleep of it all would be more than ``poll(2)`` takes."""
    part = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],  # exits once the test closes its stdin
        stdin=subprocess.PIPE,
        env={**os.environ, **lifeline_env()},
    )
    reads = 0

    def jumping() -> float:
        nonlocal reads
        reads += 1
        return 0.0 if reads == 1 else 2 * FAR

    failed: list[BaseException] = []

    def waiting() -> None:
        try:
            await_stop("part", part, FAR, STOP_TIMEOUT, clock=jumping)
        except BaseException as exc:
            failed.append(exc)
            raise

    awaiting = threading.Thread(target=waiting)
    awaiting.start()
    try:
        waitfor(lambda: awaits(part.pid) or not awaiting.is_alive(), 60, "the waiter to wait on the part's exit")
        assert part.poll() is None, "killed at a look before its deadline"
    finally:
        assert part.stdin is not None
        part.stdin.close()
        awaiting.join(60)
    assert not failed
    assert part.returncode == 0
    assert reads == 1


def awaits(pid: int) -> bool:
    """Whether this process holds a pidfd of ``pid`` (``/proc`` says which process a pidfd refers to)."""
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                if f"Pid:\t{pid}\n" in info.read():
                    return True
        except OSError:  # closed meanwhile
            continue
    return False
