"""Signals another thread of this process took, passed on to its main thread, which alone runs Python's handlers.

The kernel hands a signal sent to a process to one of its threads that does not block it: the main thread as a rule,
another when the main thread cannot take it then (the process was stopped, and another thread runs first once it is
continued: a SIGTERM sent to a frozen attempt; or the main thread blocks it for a while). CPython's C handler, in
whichever thread took it, only notes it (a flag, a byte to the wakeup descriptor): the main thread runs the Python
handler at its next bytecode, and one asleep in a system call the signal did not interrupt (a task's
``time.sleep(3600)``, luigi's wait for a step) never looks. Nor may the other threads block those signals instead:
a program a thread starts keeps its mask, and would never take a SIGTERM (``tests/nectar/test_supervisor_masks.py``).

So a thread of the process's own (:func:`watch`) waits on the wakeup descriptor and, for each signal written there,
interrupts the main thread with :data:`NUDGE`, whose handler does nothing: the main thread's call returns ``EINTR``,
Python runs every handler of a signal noted (PEP 475), and resumes the call if none raised. A signal the main thread
took itself is nudged after it too: one more ``EINTR``, no handler run twice (Python runs a handler once for all the
signals of its kind noted since its last run). The nudge's own byte is not passed on: no echo. While no signal comes,
it costs no system call (the thread sleeps in one ``poll``), nor one more descriptor for a spare's runs to look at
(:func:`_pipe`).

A run may take the wakeup descriptor for itself (asyncio's ``loop.add_signal_handler``): while it holds it, Python
writes the signals to the run's pipe, whose reader (the loop's wait, in the main thread) wakes, and a main thread
asleep in another call meanwhile runs the handler only when it next runs Python code. As the run gives it up
(``set_wakeup_fd(-1)``: the loop's last signal handler removed, or the loop closed), the watch's pipe is set back at
once (:func:`_set_wakeup_fd`, in ``signal``'s place in a watched process); it was set back only at the process's next
set-up, the rest of the run unwatched.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from typing import Any

from nectar import forks, reuse, wakeup
from nectar.process_threads import process_thread

#: the signal that interrupts the main thread so that it runs the handlers of the signals others took: one that by
#: default is ignored (a program it reaches after ``exec``, which resets the handler, takes no harm) and that nothing
#: of a run's is likely to send (the kernel sends it for a socket's urgent data, to a process that asked with
#: ``F_SETOWN``)
NUDGE = signal.SIGURG
#: bytes one ``read`` of the wakeup descriptor takes: a read that returns fewer read all the pipe held
_READ = 512
#: the process whose signals are passed on (0: none), and its wakeup descriptor
_watched: tuple[int, int] = (0, -1)
#: Python's own ``signal.set_wakeup_fd``, in whose place a watched process has :func:`_set_wakeup_fd`
_python_set_wakeup_fd = signal.set_wakeup_fd


def _set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = True) -> int:
    """``signal.set_wakeup_fd`` in a process :func:`watch` watches: Python's, and where a descriptor is given up
    (``fd`` -1), the watch's pipe set again at once: a run's asyncio loop gives up the one it took as it removes its
    last signal handler or closes. Whichever descriptor was given up, the watch's own included: two loops of a run
    that each took it, closed, had the first set the watch's back and the second give that up, the process unwatched
    for the rest of the run (review7). A child forked from the process (another pid) has Python's alone."""
    previous = _python_set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)
    pid, own = _watched
    if fd == -1 and pid == forks.pid():
        _python_set_wakeup_fd(own, warn_on_full_buffer=False)
    return previous


def _nudged(*_: Any) -> None:
    """:data:`NUDGE`'s handler: nothing; its coming made the main thread run the handlers of what others took."""


def _pipe() -> int | None:
    """One descriptor that both ends of a new pipe are written and read through, non-blocking (None where ``/proc``
    cannot reopen the pipe so): a spare's runs each look at every descriptor of its process
    (:func:`nectar.reuse.look_for_open`), and its one more to look at takes the place of the worker's pipe it no
    longer holds (:func:`nectar.wakeup.no_signals`)."""
    read, write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return os.open(f"/proc/self/fd/{read}", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    finally:
        os.close(read)
        os.close(write)


def watch() -> None:
    """Pass on to the main thread, from now on in this process, the signals another of its threads takes (called on
    the main thread, before the run whose signals matter; again before each later run of the process, which sets its
    pipe back where a run took it and gave it up, as asyncio's signal handlers do). Not where the process's
    wakeup descriptor is another's already (a worker's loop: :func:`nectar.wakeup.signals`, which wakes its main
    thread itself): that one is put back as it was, as far as can be known. Python tells the descriptor a set-up
    replaces, not whether it warned on a full buffer (``warn_on_full_buffer``): :func:`nectar.wakeup.signals`'s is put
    back without (as it set it), any other with Python's default (it warns), which asyncio's loop and every
    ``set_wakeup_fd`` that names no choice set; one set without by another is put back warning."""
    if threading.current_thread() is not threading.main_thread():
        return
    if _watched[0] == forks.pid():  # watched already: the pipe set again, where a run took it (a loop it left
        _python_set_wakeup_fd(_watched[1], warn_on_full_buffer=False)  # unclosed) or gave it up: one fstat a set-up
        return
    fd = _pipe()
    if fd is None:
        return
    previous = _python_set_wakeup_fd(fd, warn_on_full_buffer=False)
    if previous != -1:  # another's: left as it was (its warning on a full buffer as far as can be known)
        _python_set_wakeup_fd(previous, warn_on_full_buffer=not wakeup.is_signals_pipe(previous))
        os.close(fd)
        return
    _set_watched(forks.pid(), fd)
    signal.set_wakeup_fd = _set_wakeup_fd  # a descriptor a run takes and gives up: the watch's again at once
    reuse.process_handler(NUDGE, _nudged)
    main = threading.get_ident()
    thread = threading.Thread(target=_pass_on, args=(fd, main), name="nectar-main-signals", daemon=True)
    process_thread(thread).start()


def _set_watched(pid: int, fd: int) -> None:
    global _watched
    _watched = (pid, fd)


def _pass_on(fd: int, main: int) -> None:
    """The watching thread: for each batch of signals written to the wakeup descriptor ``fd``, one nudge of the main
    thread (``main``), unless the batch is only nudges."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        try:
            got = os.read(fd, _READ)
        except BlockingIOError:  # read all: sleep until the next
            poller.poll()
            continue
        except OSError:  # closed: the process no longer watches
            return
        if got.count(NUDGE) < len(got):
            try:
                signal.pthread_kill(main, NUDGE)
            except (ProcessLookupError, OSError):  # the main thread is gone: the process is ending
                return
        if len(got) < _READ:
            poller.poll()


def _forked() -> None:
    """In a child forked from a watched process (a step run in parallel): it has no watching thread; its signals are
    no longer written to its parent's pipe, and its copies of the pipe are closed."""
    pid, fd = _watched
    if pid and pid != forks.pid():
        try:
            _python_set_wakeup_fd(-1)
        except ValueError:  # Python refused (not its main thread): still written to, kept open (not another's number)
            return
        os.close(fd)
        _set_watched(0, -1)


os.register_at_fork(after_in_child=_forked)
