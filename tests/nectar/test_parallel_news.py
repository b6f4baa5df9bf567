"""What a step process forked to run beside others tells its attempt, and how the attempt stops listening: neither
may hang on a lock a process held when it was forked or killed."""

from __future__ import annotations

import multiprocessing
import os
import threading

from nectar.parallel import LOST, _Attempt, _lost

#: seconds that only a hung test reaches
HANG = 60.0


def test_a_step_refused_tells_its_attempt_before_its_own_refusal_can_block_on_a_lock_held_at_the_fork() -> None:
    attempt = _Attempt(os.getpid(), None)
    inherited = threading.Event()  # the attempt's wake-up: its heartbeat thread holds its lock as the step forks
    inherited._cond.acquire()  # type: ignore[attr-defined]
    try:
        step = multiprocessing.get_context("fork").Process(target=_lost(attempt, inherited.set), daemon=True)
        step.start()
    finally:
        inherited._cond.release()  # type: ignore[attr-defined]
    try:
        # the step's copy of the lock stays held for ever: its ``set`` never returns, yet the attempt hears of it
        news = attempt.failures._reader  # type: ignore[attr-defined]
        assert news.poll(HANG), "the step blocked on its refusal before telling its attempt"
        assert attempt.failures.get() == LOST
    finally:
        step.kill()
        step.join()
