"""A signal another thread of the process takes reaches the main thread asleep in one long call; a child forked from
a watched process writes nothing to its parent's pipe; a run of a reused process that took the wakeup descriptor and
gave it up (asyncio's signal handlers, then ``loop.close()``) leaves the next runs watched (each in a forked child: the
test's process keeps its own)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from nectar import main_signals, reuse

#: how long a child may take to show its main thread was interrupted: a hang guard only (the child's main thread
#: blocks for good otherwise), never a bound on how fast
HANG_GUARD = 120.0


def in_a_child(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child; fail if it raised, or if it still runs at :data:`HANG_GUARD` (then killed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            check()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    guard = time.monotonic() + HANG_GUARD
    done, status = os.waitpid(pid, os.WNOHANG)
    while not done and time.monotonic() < guard:
        time.sleep(0.05)
        done, status = os.waitpid(pid, os.WNOHANG)
    if not done:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the main thread of the process's next run blocked on through the signal")
    assert os.waitstatus_to_exitcode(status) == 0


def blocked(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` of ``pid`` waits in a pipe's ``read`` (a signal sent now finds it there)."""
    try:
        return "pipe" in Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
    except OSError:
        return False


class Heard(Exception):
    """Raised by the handler of the signal sent."""


def _heard(*_: object) -> None:
    raise Heard


def send_once_blocked(pid: int, main: int) -> None:
    """SIGUSR1 to ``pid`` once its thread ``main`` blocks in a pipe's read."""
    while not blocked(pid, main):
        time.sleep(0.001)
    os.kill(pid, signal.SIGUSR1)


def heard_while_blocked() -> None:
    """SIGUSR1 (handled by :func:`_heard`), blocked in the main thread so that the kernel hands it to another, is
    sent once the main thread blocks in a read of a pipe nothing writes to: only the handler ends the read (a sleep
    that ended on its own would run the handler next, and pass)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    pid, main = os.getpid(), threading.get_native_id()
    threading.Thread(target=send_once_blocked, args=(pid, main), daemon=True).start()
    nothing, _kept = os.pipe()
    try:
        os.read(nothing, 1)
    except Heard:
        return


def test_a_signal_another_thread_takes_interrupts_the_main_threads_sleep_to_run_its_handler() -> None:
    def check() -> None:
        signal.signal(signal.SIGUSR1, _heard)
        main_signals.watch()
        heard_while_blocked()

    in_a_child(check)


def test_a_child_forked_from_a_watched_process_writes_no_signal_to_its_parents_pipe() -> None:
    def check() -> None:
        main_signals.watch()
        child = os.fork()
        if child == 0:
            os._exit(0 if signal.set_wakeup_fd(-1) == -1 else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert signal.set_wakeup_fd(-1) != -1, "its own stays"

    in_a_child(check)


def _a_run_that_takes_the_wakeup_descriptor_and_gives_it_up() -> None:
    loop = asyncio.new_event_loop()
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    loop.close()


def test_a_run_that_used_asyncio_signal_handlers_leaves_the_next_runs_watched() -> None:
    def check() -> None:
        signal.signal(signal.SIGUSR1, _heard)
        main_signals.watch()  # the spare, as it sets up
        before = reuse.before_run()
        _a_run_that_takes_the_wakeup_descriptor_and_gives_it_up()
        reuse.put_back(before)
        main_signals.watch()  # set up again for its next run

        heard_while_blocked()

    in_a_child(check)
