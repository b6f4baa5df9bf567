"""A signal another thread of the process takes reaches the main thread asleep in one long call; a child forked from
a watched process writes nothing to its parent's pipe (each in a forked child: the test's process keeps its own)."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable

from nectar import main_signals
from tests.helpers.threads import asleep


def in_a_child(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child; fail if it raised (or never ended)."""
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
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class Heard(Exception):
    """Raised by the handler of the signal sent."""


def _heard(*_: object) -> None:
    raise Heard


def test_a_signal_another_thread_takes_interrupts_the_main_threads_sleep_to_run_its_handler() -> None:
    def check() -> None:
        signal.signal(signal.SIGUSR1, _heard)
        main_signals.watch()
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])  # the kernel hands it to another thread
        pid, main = os.getpid(), threading.get_native_id()

        def send_once_asleep() -> None:
            while not asleep(pid, main):
                time.sleep(0.001)
            os.kill(pid, signal.SIGUSR1)

        threading.Thread(target=send_once_asleep, daemon=True).start()
        try:
            time.sleep(120)  # only its handler ends it early; a test that hangs fails at its end
        except Heard:
            return
        raise AssertionError("the main thread slept on")

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
