"""A signal another thread of the process takes reaches the main thread asleep in one long call; a child forked from
a watched process writes nothing to its parent's pipe; a run of a reused process that took the wakeup descriptor and
gave it up (asyncio's signal handlers, then ``loop.close()``) is watched again from then on, and so are the next runs;
another's descriptor is put back as it was (each in a forked child: the test's process keeps its own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar import main_signals, reuse, wakeup
from tests.helpers.registries import known

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


def blocked(pid: int, tid: int, waits_in: str = "pipe") -> bool:
    """Whether thread ``tid`` of ``pid`` waits in a pipe's ``read`` (or the kernel function ``waits_in`` names:
    ``epoll`` for an event loop's wait) (a signal sent now finds it there)."""
    try:
        return waits_in in Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
    except OSError:
        return False


class Heard(Exception):
    """Raised by the handler of the signal sent."""


def _heard(*_: object) -> None:
    raise Heard


def send_once_blocked(pid: int, main: int, waits_in: str = "pipe") -> None:
    """SIGUSR1 to ``pid`` once its thread ``main`` blocks in a pipe's read (or where ``waits_in`` says)."""
    while not blocked(pid, main, waits_in):
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


def test_a_run_whose_asyncio_loop_gave_the_descriptor_up_is_watched_again_for_the_rest_of_it() -> None:
    """As a run's loop gives up the wakeup descriptor it took (``loop.close()`` sets none), the watch's pipe is set
    again at once: a signal another thread takes later in that run interrupts the main thread's sleep. It was set
    again only at the process's next set-up: that sleep went on (here, for good)."""

    def check() -> None:
        signal.signal(signal.SIGUSR1, _heard)
        main_signals.watch()
        _a_run_that_takes_the_wakeup_descriptor_and_gives_it_up()
        heard_while_blocked()

    in_a_child(check)


def test_a_signal_another_thread_takes_while_a_runs_asyncio_loop_holds_the_descriptor_reaches_the_loops_wait() -> None:
    """What the watch leaves to a run that takes the wakeup descriptor (asyncio's ``loop.add_signal_handler``) while
    the run holds it: Python writes the signal to the loop's own pipe, which wakes the loop's wait in the main thread,
    and the handler runs there (README: a main thread asleep in another call meanwhile acts on it only when it next
    runs Python code; the watch is back as the loop gives the descriptor up)."""

    def check() -> None:
        signal.signal(signal.SIGUSR1, _heard)
        main_signals.watch()
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])  # the kernel hands it to another thread
        loop = asyncio.new_event_loop()
        try:
            loop.add_signal_handler(signal.SIGUSR2, lambda: None)  # the run's: the descriptor the loop's now
            pid, main = os.getpid(), threading.get_native_id()
            threading.Thread(target=send_once_blocked, args=(pid, main, "epoll"), daemon=True).start()
            with contextlib.suppress(Heard):
                loop.run_until_complete(asyncio.Event().wait())  # nothing sets it: only the handler ends the wait
                raise AssertionError("the loop's wait ended without the handler")
        finally:
            loop.close()

    in_a_child(check)


def warned_of_a_full_pipe(read: int) -> bool:
    """Whether a signal that finds the pipe of the wakeup descriptor (``read``, its other end) full has Python warn
    (``warn_on_full_buffer``: it reports the failed write as unraisable, once the signal's handler has run)."""
    reported: list[object] = []
    sys.unraisablehook = reported.append
    filler = os.open(f"/proc/self/fd/{read}", os.O_WRONLY | os.O_NONBLOCK)  # the same pipe, written from here
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(filler, b"\0" * 65536)
    handled: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _: handled.append(signum))
    os.kill(os.getpid(), signal.SIGUSR1)
    assert handled == [signal.SIGUSR1]  # the handler ran, and Python's report of the write after it, if any
    return bool(reported)


@pytest.mark.parametrize("warned", [False, True], ids=["nectar.wakeup's, without", "another's, with the default"])
def test_a_wakeup_descriptor_watch_leaves_to_another_warns_on_a_full_pipe_as_it_did(warned: bool) -> None:
    """A watch in a process whose wakeup descriptor is another's puts that one back (it probes with its own): the
    worker loop's (:func:`nectar.wakeup.signals`, set without a warning on a full pipe) as it was; before, with
    Python's default, a signal that found its pipe full (signals already written, not yet read) was reported as an
    exception ignored. One that another set with the default (asyncio's loop) still warns."""

    def check() -> None:
        if warned:
            read, write = os.pipe2(os.O_NONBLOCK)
            signal.set_wakeup_fd(write)
        else:
            read = known(wakeup.signals())
        main_signals.watch()
        assert warned_of_a_full_pipe(read) is warned

    in_a_child(check)


@pytest.mark.parametrize("closed_first", ["made first", "made last"])
def test_a_run_whose_two_asyncio_loops_gave_the_descriptor_up_is_watched_again_for_the_rest_of_it(
    closed_first: str,
) -> None:
    """Two loops of the run add a signal handler each (the descriptor the first's, then the second's), then close,
    in either order: the watch's pipe is the process's wakeup descriptor again, as after one loop. The first close
    sets it back (it gives up the second's); the second close gives up the watch's own (it sets none, as asyncio's
    last handler removed does), and the wrapper put nothing back: a signal another thread takes later in that run
    no longer reached a main thread asleep (a cancel's SIGTERM waited for the grace's SIGKILL; review7)."""

    def check() -> None:
        main_signals.watch()
        loops = [asyncio.new_event_loop() for _ in range(2)]
        for loop in loops:
            loop.add_signal_handler(signal.SIGUSR2, lambda: None)
        for loop in loops if closed_first == "made first" else loops[::-1]:
            loop.close()
        assert signal.set_wakeup_fd(-1) != -1, "the process's wakeup descriptor is the watch's again"

    in_a_child(check)


def test_giving_up_the_signals_pipe_in_a_watched_process_leaves_the_watch_set_and_open() -> None:
    """``nectar.wakeup.no_signals`` in a process the watch covers closes only its own pipe: the watch's stays the
    wakeup descriptor, open. It closed whatever descriptor it found set: the watch's, which the watch had just set
    again, so that signals were written to a closed (later another's) number."""

    def check() -> None:
        main_signals.watch()
        watched = signal.set_wakeup_fd(-1)  # the watch's, set again at once
        assert watched >= 0
        wakeup.no_signals()
        os.fstat(watched)  # still open
        assert signal.set_wakeup_fd(-1) == watched

    in_a_child(check)
