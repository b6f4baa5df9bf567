"""The grace of an interrupted attempt counts the seconds it could use: a real process, stopped or not, and a clock the
test moves."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import waitfor
from harness.procfs import state
from nectar.grace import GRACE_BACKSTOP, INTERRUPT_GRACE, Grace, run_queue_wait
from nectar.grace import stopped as is_stopped


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def attempt() -> Iterator[int]:
    """A process waiting on its input (it sleeps: its seconds count, none of them waiting for a CPU), killed after the
    test."""
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"up\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"up\n"  # it ran: next it sleeps, reading its input
    waitfor(lambda: state(proc.pid) == "S", 60, "cat to wait for more input")
    yield proc.pid
    proc.kill()
    proc.communicate()


def test_the_seconds_of_a_running_or_sleeping_attempt_count(attempt: int) -> None:
    clock = Clock()
    grace = Grace(attempt, clock=clock)
    clock.now += INTERRUPT_GRACE / 2
    assert not grace.over() and grace.left() == pytest.approx(INTERRUPT_GRACE / 2, abs=0.1)
    clock.now += INTERRUPT_GRACE / 2
    assert grace.over()


def test_the_seconds_a_stopped_attempt_spends_stopped_do_not_count(attempt: int) -> None:
    """Once continued, the process waits for a CPU in real seconds (schedstat), which a grace takes off the seconds
    of its clock since its last look: looked at before the test's clock moves on (the process asleep again, waiting
    no more), that wait is taken off none of them. Without that look, any wait of the continued process (a loaded
    machine's) was taken off the grace's last seconds, and it was not over (1 run in 6 at a load of 5-8)."""
    clock, grace = graced_then_stopped(attempt)
    clock.now += INTERRUPT_GRACE * 2
    assert not grace.over() and grace.used == 0.0
    os.kill(attempt, signal.SIGCONT)
    stopped(attempt, False)
    waitfor(lambda: state(attempt) == "S", 60, "cat to wait for more input again")
    assert not grace.over() and grace.used == 0.0  # no second of the clock since the last look
    clock.now += INTERRUPT_GRACE
    assert grace.over()


def test_the_seconds_between_a_look_that_saw_it_stopped_and_the_next_do_not_count(attempt: int) -> None:
    """Continued some time after a look saw it stopped, the attempt is seen running at the next look: when it was
    continued in between is unknown, and none of those seconds count (they all did: a worker looks every heartbeat,
    2 s by default and more on a loaded machine, and an attempt continued just after a look had that much of its
    grace taken before it could run; one continued after two looks lost all of it). The seconds after count."""
    clock, grace = graced_then_stopped(attempt)
    clock.now += 1
    assert not grace.over() and grace.used == 0.0  # a look that sees it stopped
    os.kill(attempt, signal.SIGCONT)
    stopped(attempt, False)
    clock.now += INTERRUPT_GRACE
    assert not grace.over() and grace.used == 0.0
    clock.now += INTERRUPT_GRACE
    assert grace.over()


def test_an_attempt_that_stays_stopped_is_ended_at_the_backstop(attempt: int) -> None:
    clock, grace = graced_then_stopped(attempt)
    clock.now += GRACE_BACKSTOP - 1
    assert not grace.over()
    clock.now += 1
    assert grace.over()


def test_the_kernel_says_how_long_a_process_waited_for_a_cpu(attempt: int) -> None:
    """The wait is schedstat's second field, read of a process that is stopped (so it does not move between reads),
    in seconds; None for a process that is gone."""
    os.kill(attempt, signal.SIGSTOP)
    stopped(attempt, True)
    try:
        fields = Path(f"/proc/{attempt}/schedstat").read_text().split()
        assert run_queue_wait(attempt) == int(fields[1]) / 1e9
    finally:
        os.kill(attempt, signal.SIGCONT)
    assert run_queue_wait(2**22 + 1) is None  # past the kernel's largest pid: no such process


def graced_then_stopped(pid: int) -> tuple[Clock, Grace]:
    """The grace of ``pid`` on a clock the test moves, begun before ``pid`` was stopped."""
    clock = Clock()
    grace = Grace(pid, clock=clock)
    os.kill(pid, signal.SIGSTOP)
    stopped(pid)
    return clock, grace


def stopped(pid: int, yes: bool = True) -> None:
    """Wait until the kernel shows ``pid`` stopped (or, not ``yes``, running again): a signal is delivered later."""
    waitfor(lambda: is_stopped(pid) == yes, 60, f"{pid} {'stopped' if yes else 'continued'}")
