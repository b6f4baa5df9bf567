"""What a step process forked to run beside others tells its attempt, and how the attempt stops listening: neither
may hang on a lock a process held when it was forked or killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.queues import SimpleQueue

from nectar import parallel
from nectar.parallel import LOST, News, _Attempt, _lost, forked_steps

#: seconds that only a hung test reaches
HANG = 60.0


def test_a_step_refused_tells_its_attempt_before_its_own_refusal_can_block_on_a_lock_held_at_the_fork() -> None:
    attempt = _Attempt(os.getpid(), None)
    inherited = threading.Event()  # the attempt's wake-up: its heartbeat thread holds its lock as the step forks
    held: threading.Condition = vars(inherited)["_cond"]  # the Event's own lock (threading's name)
    held.acquire()
    try:
        step = multiprocessing.get_context("fork").Process(target=_lost(attempt, inherited.set), daemon=True)
        step.start()
    finally:
        held.release()
    try:
        # the step's copy of the lock stays held for ever: its ``set`` never returns, yet the attempt hears of it
        news: Connection = vars(attempt.failures)["_reader"]
        assert news.poll(HANG), "the step blocked on its refusal before telling its attempt"
        assert attempt.failures.get() == LOST
    finally:
        step.kill()
        step.join()


def test_an_attempt_ends_when_a_step_was_killed_while_it_held_the_lock_of_the_queue_its_news_goes_to() -> None:
    told, tell = multiprocessing.Pipe(duplex=False)

    def step(failures: SimpleQueue[News]) -> None:  # killed in the middle of a put: the queue's write lock stays held
        with vars(failures)["_wlock"]:
            tell.send("holding")
            signal.pause()

    ended = threading.Event()

    def attempt() -> None:
        with forked_steps():
            assert parallel._attempt is not None
            process = multiprocessing.get_context("fork").Process(target=step, args=(parallel._attempt.failures,))
            process.start()
            assert told.poll(HANG), "the step never took the lock"
            process.kill()  # SIGKILL
            process.join()
        ended.set()

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    assert ended.wait(HANG), "the attempt hung stopping its collector on the lock its killed step held"
    thread.join()
