"""Children die with their parent (Linux): the parent-death signal, and SIGHUP taken as SIGTERM.

Whatever kills ``nectar serve`` (Ctrl-C, a closed terminal, ``kill -9``, a crash), the kernel
sends SIGTERM to each process it started (luigid, the gunicorn master, ``nectar worker``), which
then stops as it would on a plain SIGTERM: gunicorn's workers follow their master, a worker
whose supervisor is gone interrupts its running attempts at once and requeues them. A worker does
the same for the processes it forks (its attempts and its spare). Linux only: ``prctl(2)``'s
``PR_SET_PDEATHSIG``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

#: ``prctl(2)`` option: the signal this process gets when its parent dies
PR_SET_PDEATHSIG = 1
#: set by ``nectar serve`` in the environment of what it starts: its own pid
SUPERVISOR_VAR = "NECTAR_SUPERVISOR_PID"


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Have the kernel send ``signum`` to this process when ``parent`` (its parent now) dies.

    A parent that died before this call (this process was already handed to init) is treated
    the same way: ``signum`` is sent at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def child_of_this_process(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``signum`` when this process dies."""
    parent = os.getpid()
    return lambda: die_with_parent(parent, signum)


#: the signals that stop a part: held from its start until it handles them (:func:`part_of_this_process`)
STOPS = frozenset({signal.SIGTERM, signal.SIGHUP})


def part_of_this_process() -> Callable[[], None]:
    """A ``preexec_fn`` for a process that calls :func:`stops_exit_until_handled` as it starts (a part of ``nectar
    serve``): SIGTERM when this process dies, and a stop (SIGTERM, SIGHUP) held pending, not acted on, until that
    call. The interpreter starts before any of the part's code runs (~20 ms; more on a loaded machine): a stop there
    killed it (status -15). The mask is kept across ``exec``; the call takes the stop it held (status 0)."""
    parent = os.getpid()

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)  # first: a parent that died already sends SIGTERM next
        die_with_parent(parent)

    return preexec


def supervisor_gone() -> bool:
    """Whether this process was started by ``nectar serve`` (``NECTAR_SUPERVISOR_PID``) and it is gone."""
    supervisor = os.environ.get(SUPERVISOR_VAR, "")
    return supervisor.isdigit() and os.getppid() != int(supervisor)


def hangup_is_terminate() -> None:
    """SIGHUP (a closed terminal) does what SIGTERM does in this process, whatever handles SIGTERM."""
    signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))


def stops_exit_until_handled() -> None:
    """A stop (SIGTERM, or SIGHUP taken as it) ends this process with status 0 until its own handlers are set, as it
    would after: for a process that works before it sets them (luigid listens on its port; a worker or a clock
    imports the chain files) and has nothing to save yet. A stop in between killed it (status -15)."""
    hangup_is_terminate()
    signal.signal(signal.SIGTERM, _exit_ok)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)  # a stop held since the start (part_of_this_process) ends it now


def _exit_ok(signum: int, frame: object) -> None:
    """Ends the process at once, not by ``SystemExit``: the code it interrupts may catch that (luigi's
    ``Scheduler.load`` reads its state file inside ``except BaseException``: the stop was swallowed, and luigid ran
    on with an empty state). Nothing is lost: nothing is to save before the process's own handler is set."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # None, or closed
            stream.flush()
    os._exit(0)
