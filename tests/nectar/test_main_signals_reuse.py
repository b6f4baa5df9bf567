"""A reused attempt process keeps passing on, run after run, the signals another thread takes.

A run whose code takes the process's wakeup descriptor and gives it up (asyncio's ``loop.add_signal_handler``, then
``loop.close()``, which sets it to -1) leaves the process with none: :func:`nectar.reuse.put_back` does not set
main_signals' back, and :func:`nectar.main_signals.watch` does nothing again in a process it watched once. Every later
run of that process (another user's task) then slept on through a SIGTERM that another thread took: the drain's
interrupt never reached it, and the worker killed it at the grace's end (found by review6, round 52).
"""

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


def _in_a_child(check: Callable[[], None]) -> None:
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


def _blocked(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` of ``pid`` waits in a pipe's ``read`` (a signal sent now finds it there)."""
    try:
        return "pipe" in Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
    except OSError:
        return False


class Heard(Exception):
    """Raised by the handler of the signal sent."""


def _heard(*_: object) -> None:
    raise Heard


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

        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])  # the kernel hands it to another thread
        pid, main = os.getpid(), threading.get_native_id()

        def send_once_asleep() -> None:
            while not _blocked(pid, main):
                time.sleep(0.001)
            os.kill(pid, signal.SIGUSR1)

        threading.Thread(target=send_once_asleep, daemon=True).start()
        # nothing is ever written to it: only the handler ends the read (a sleep that ended on its own ran the
        # handler next, and passed)
        nothing, _kept = os.pipe()
        try:
            os.read(nothing, 1)
        except Heard:
            return

    _in_a_child(check)
