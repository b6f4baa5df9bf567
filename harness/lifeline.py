"""The harness's lifeline: every process a harness starts dies with the process that started it, whatever kills it.

The first part a process starts (:meth:`harness.Processes.start`) makes a pipe and starts a watcher with its read end;
the write end stays open in this process, never written to, never closed. When this process ends, however it ends
(a finalizer that never ran because pytest or a benchmark was SIGKILLed by a CI timeout, ``timeout -s KILL`` or the
OOM killer), the kernel closes it, the watcher reads end-of-file and SIGKILLs every process that carries this
process's :data:`LIFELINE_VAR` in its environment: each part, and what each part started (gunicorn's workers, a
worker's attempts, ``nectar serve``'s parts), frozen ones (SIGSTOP) too. A normal end closes it the same way, the
parts already stopped.

Why not the parent-death signal of :mod:`nectar.lifeline`, which ``nectar serve`` gives its parts: ``prctl``'s
``PR_SET_PDEATHSIG`` fires when the *thread* that started the child ends, and the harness starts parts from any
thread (a fixture's, a benchmark's pool), so a part would die with a thread long before its test ended; it must
be set in the child between fork and exec, by a ``preexec_fn`` (luigid and moto are not our code), which is not
safe while the parent runs threads and keeps :mod:`subprocess` from its faster ways to start a child; and it
reaches the child alone, as a signal a frozen process never acts on. A pipe's end is the process's, closed only
when the last thread ends, it needs nothing in the child, and the watcher kills a part's whole tree, frozen or not.

A child forked (``os.fork``, not exec'd) from this process closes its copy of the write end, so that the watcher
does not wait for it too; its own parts get a lifeline of their own. A part between its fork and its exec carries no
lifeline yet (its environment is still this process's), so it keeps its copy of the write end until its exec closes
it (close-on-exec: :meth:`harness.Processes.start` starts parts without ``close_fds``, which closed it just before
the exec): the watcher cannot see the end of the pipe before the part carries its lifeline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from harness.procfs import carrying, send

#: every process a harness starts carries this variable, set to the lifeline of the process that started it
LIFELINE_VAR = "NECTAR_HARNESS_LIFELINE"
REPO = Path(__file__).resolve().parent.parent

_lock = threading.Lock()
#: this process's lifeline, once its watcher is started: the value its parts carry and the pipe's write end
_held: tuple[str, int] | None = None
#: every watcher started here, kept (a Popen let go while its process runs warns, ResourceWarning)
_watchers: list[subprocess.Popen[bytes]] = []


def lifeline_env() -> dict[str, str]:
    """The variable to start a process with so that it dies with this one (the first call starts the watcher; a
    call that finds it gone, killed by someone, starts another for the same lifeline: no part is left unwatched)."""
    global _held
    with _lock:
        if _held is None:
            _held = _start_watcher(uuid.uuid4().hex)
        elif _watchers[-1].poll() is not None:
            os.close(_held[1])
            _held = _start_watcher(_held[0])
        return {LIFELINE_VAR: _held[0]}


def close_on_exec() -> None:
    """Make every file this process holds beyond its standard streams close at the exec of what it starts: what it
    inherited (a CI runner's pipe, say) would otherwise reach a part that a start without ``close_fds`` makes (its own
    files are close-on-exec already, PEP 446).

    Nothing needs to hold a lock from here to the fork: what this finds was inherited at the process's start, and no
    thread of the harness's process makes a descriptor inheritable after it (Python's own are born close-on-exec; the
    one ``os.dup2`` of ours, a run's log capture, targets the standard streams, which a part gets replaced). A C
    library's socket between its ``socket()`` and its ``FD_CLOEXEC`` (libpq sets it after) is the one window left,
    and a lock of ours would not close it: that library takes none."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor, gone once listed
            if int(name) > 2 and os.get_inheritable(int(name)):
                os.set_inheritable(int(name), False)


def _start_watcher(lifeline: str) -> tuple[str, int]:
    read_end, write_end = os.pipe()  # neither is inherited by what this process starts but the watcher, given one
    # no harness variable, no setting: no one's stop takes the watcher for a part; its own session: no Ctrl-C
    env = {name: value for name, value in os.environ.items() if not name.startswith("NECTAR_")}
    argv = [sys.executable, "-m", "harness.lifeline", str(read_end), lifeline]
    quiet = subprocess.DEVNULL  # holds none of this process's outputs open (a CI log's pipe) after it
    try:
        watcher = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            pass_fds=[read_end],
            stdin=quiet,
            stdout=quiet,
            stderr=quiet,
            start_new_session=True,
        )
        _watchers.append(watcher)
    finally:
        os.close(read_end)
    return lifeline, write_end


def _forget_in_forked_child() -> None:
    """In a child forked from this process: close the copy of the write end, and make a lifeline of its own."""
    global _held, _lock
    _lock = threading.Lock()  # another thread may have held it when the process forked
    if _held is not None:
        os.close(_held[1])
        _held = None


os.register_at_fork(after_in_child=_forget_in_forked_child)


def sweep(lifeline: str, timeout: float = 60.0, interval: float = 0.05) -> None:
    """SIGKILL every process carrying ``lifeline`` (a stopped one too), again until none is left: one may fork while
    its parent is killed; gives up after ``timeout`` (a process in an uninterruptible wait)."""
    deadline = time.monotonic() + timeout
    while (pids := carrying(LIFELINE_VAR, lifeline)) and time.monotonic() < deadline:
        for pid in pids:
            send(pid, signal.SIGKILL)
        time.sleep(interval)


def watch(read_end: int, lifeline: str) -> None:
    """The watcher: wait until the pipe's write end is closed (nothing is ever written to it), then :func:`sweep`."""
    while os.read(read_end, 4096):
        pass
    sweep(lifeline)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
