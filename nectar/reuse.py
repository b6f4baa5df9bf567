"""Whether a process that ended its run cleanly may take another, and what it puts back between the two.

An attempt process (:mod:`nectar.spares`) that ended its run by its own hand goes back to being a ready spare,
as Celery's pool processes and gunicorn's workers take request after request, unless its run left something behind
that the next must not inherit (:func:`left_behind`): a thread still alive, a child process, a resident size grown
past its bound since it was first ready (:func:`grown_mb`). What a run changes in the process and does not put back
itself is put back (:func:`put_back`): the signal handlers, interval timer, root log handlers and standard streams
as they were before it, the working directory, environment variables, ``sys.path`` and file mode mask, luigi's task
instances, the run its records name.
Its chain file is executed again for each run (:func:`~nectar.catalog.loader.fresh_chain_module`): a chain's module
globals never reach the next run; what the modules it imports keep does, as under Celery.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from luigi.task_register import Register

from nectar.config import get_settings
from nectar.errors import InvalidSetting
from nectar.logs.format import current_run

#: seconds the threads a run started get to end once it has (its heartbeat's, luigi's keep-alive)
THREAD_GRACE = 0.5
#: the signals whose handlers a run may change (those Python lets set), as numbers
_SIGNALS = [int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
#: a signal's handler as Python holds it (no system call), read by the C function that ``signal.getsignal`` wraps to
#: answer SIG_DFL and SIG_IGN as enum members: ~0.4 µs a signal, 60 signals twice a run (~50 µs of a run's CPU),
#: where the C function's answer (the same object each time: 0 and 1 for those two) takes ~20 ns
_handler: Callable[[int], Any] = sys.modules["_signal"].getsignal  # ``signal``'s C module, untyped: named here
#: ``os.waitid``'s option for children of every kind (Linux's ``__WALL``: those whose exit signal is not SIGCHLD too)
_WALL = 0x40000000
_PAGE = os.sysconf("SC_PAGE_SIZE")
#: threads of the process's own that a run's work may start, which then wait for more run after run: never what a
#: run left behind (:func:`process_thread`)
_process_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
#: by signal, the handler of the process's own that a run's work may set, which then stays from run to run: never what
#: a run changed (:func:`process_handler`)
_process_handlers: dict[int, Callable[..., None]] = {}
#: ``os.environ``'s own dictionary (bytes to bytes, the process's environment as Python last set it): copied and
#: compared in ~3.5 µs a run, where the mapping's public copy and comparison decode every variable (~190 µs)
_ENVIRON: dict[bytes, bytes] = vars(os.environ)["_data"]
#: this process's resident megabytes when it was first ready for a run (:func:`before_run`; None: not yet, as in a
#: process just forked): what it shares with the worker it was forked from, and what any fresh process holds
_ready_mb: float | None = None


def _forked() -> None:
    global _ready_mb
    _ready_mb = None


os.register_at_fork(after_in_child=_forked)


@dataclass(frozen=True)
class Before:
    """What a process holds before its run, to tell what the run left (:func:`left_behind`, :func:`put_back`)."""

    threads: frozenset[threading.Thread]
    handlers: tuple[tuple[int, Any], ...]
    #: the root logger's handlers, and ``sys.stdout``, ``sys.stderr``
    log_handlers: tuple[logging.Handler, ...]
    streams: tuple[TextIO, TextIO]
    #: the working directory, the environment (:data:`_ENVIRON`), ``sys.path`` and the file mode mask
    cwd: str
    environ: dict[bytes, bytes]
    path: tuple[str, ...]
    umask: int


def before_run() -> Before:
    """Note the threads, signal handlers, log handlers, standard streams, working directory, environment, ``sys.path``
    and file mode mask of this process (its main thread, before a run); the first time in this process, its resident
    size too (:func:`grown_mb`)."""
    global _ready_mb
    if _ready_mb is None:
        _ready_mb = rss_mb()
    handlers = tuple(zip(_SIGNALS, map(_handler, _SIGNALS), strict=True))
    root = tuple(logging.getLogger().handlers)
    umask = os.umask(0)
    os.umask(umask)
    return Before(
        frozenset(threading.enumerate()),
        handlers,
        root,
        (sys.stdout, sys.stderr),
        os.getcwd(),
        _ENVIRON.copy(),
        tuple(sys.path),
        umask,
    )


def process_thread(thread: threading.Thread, registry: str | None = None) -> threading.Thread:
    """Mark ``thread`` as the process's own, not a run's, though a run's work may start it (the registry's
    checkpointer, woken by a run's writes: :mod:`nectar.registry.sqlite_checkpoints`): a process whose run started it
    still takes another (:func:`left_behind`). A thread of a ``registry`` file is the process's own only for the
    registry its settings name: one of another file is a run's (its code opened a registry of its own), and its
    process is retired as for any thread a run leaves. Answers ``thread``."""
    if registry is None or _own_registry(registry):
        _process_threads.add(thread)
    return thread


def process_handler(signum: int, handler: Callable[..., None]) -> None:
    """Make ``handler`` the process's own for ``signum``, set now unless it is already: one that a run's work sets
    (an attempt's lease, which acts on the attempt running then, if any) and that stays set from run to run, which
    :func:`put_back` leaves as it is (in the main thread only, as any handler)."""
    _process_handlers[signum] = handler
    if _handler(signum) is not handler:
        signal.signal(signum, handler)


def _own_registry(path: str) -> bool:
    """Whether ``path`` is the SQLite registry the process's settings name (none where they name PostgreSQL); where
    its settings cannot be read (a process that is no role of ours), any is."""
    try:
        settings = get_settings()
    except InvalidSetting:
        return True
    return not settings.database_url and os.path.realpath(path) == os.path.realpath(settings.registry_path)


def left_behind(before: Before, max_rss_mb: int) -> str | None:
    """Why this process must not take another run after the one that ended (None: it may): a thread the run
    started (not one of the process's own: :func:`process_thread`) still alive after :data:`THREAD_GRACE` seconds,
    a child process of the run (even one that ended, not
    waited for), a resident size grown by more than ``max_rss_mb`` since the process was first ready (0: no bound):
    :func:`grown_mb`."""
    deadline = time.monotonic() + THREAD_GRACE
    for thread in set(threading.enumerate()) - before.threads - set(_process_threads):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return f"its run left the thread {thread.name!r} running"
    child = _child_left()
    if child:
        return f"its run left the child process {child}"
    if max_rss_mb and (grown := grown_mb()) > max_rss_mb:
        return f"its resident size grew since it was first ready by {grown:.0f} MB, above {max_rss_mb} MB"
    return None


def grown_mb() -> float:
    """The resident megabytes this process added since it was first ready for a run (:func:`before_run`; all of its
    resident size before): what its runs kept, which a fresh process would not hold, and what
    ``NECTAR_PROCESS_MAX_RSS_MB`` bounds.

    Its resident size alone counts the pages it shares with the worker it was forked from: a worker itself past the
    bound (``nectar worker --clock`` imports the chains) had every attempt process past it after every run, each
    retired and forked again. Its private size (USS, ``/proc/self/smaps_rollup``'s ``Private_*``) leaves them out
    but costs the kernel a walk of the process's page tables on each read (~4.4-5.6 ms at 335 MB resident, ~0.3 ms
    at 55 MB, where ``statm`` takes ~2.3 µs), after every run; and counts the shared pages a run wrote to (copied),
    which a fresh process would copy again in its run: retiring the process gives back none of them. So: one
    ``statm`` read a run, as before, and one when the process is first ready."""
    return rss_mb() - (_ready_mb or 0.0)


def _child_left() -> int:
    """A child process of this one, running or ended but not waited for (0: none): not reaped here, lest whoever
    started it wait for it in vain.

    Whether there is one is asked first in one system call that reaps nothing (``waitid`` of any child, of any of the
    process's threads, ended or not: ECHILD when there is none); only when there is one are the threads' lists of
    children read to name it (one call, where that reading took ~40 a run: a listing, then an open, a read and a
    close for each thread)."""
    try:
        ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL)
    except ChildProcessError:
        return 0
    if ended is not None:  # one that ended, not waited for
        return ended.si_pid
    return _child_listed()


def _child_listed() -> int:
    """A child process of this one that the threads' lists in ``/proc`` name (0: none)."""
    for thread in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{thread}/children") as listing:
                pids = listing.read().split()
        except OSError:  # the thread ended meanwhile
            continue
        if pids:
            return int(pids[0])
    return 0


def rss_mb() -> float:
    """This process's resident size in megabytes: one ``read`` of ``/proc/self/statm`` (a line of a few numbers), its
    descriptor opened and closed, where a text file object made after each run also asked the kernel twice for the
    file's kind and size, once whether it is a terminal (ENOTTY) and twice where it stood: 9 system calls, now 3."""
    statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(os.read(statm, 256).split()[1]) * _PAGE / 2**20
    finally:
        os.close(statm)


def put_back(before: Before) -> None:
    """Undo what a run changed in this process and does not undo itself (each step's log capture is undone as the
    step ends: :func:`~nectar.logs.capture.redirect_output`): the signal handlers it set, its interval timer, the
    root logger's handlers and the standard streams if its code changed them, the working directory, environment
    variables, ``sys.path`` and file mode mask (what a fresh process of the worker's would start its run with),
    luigi's cache of task instances (the next run makes its own), the run its records name. A handler of the
    process's own (:func:`process_handler`) stays.
    """
    signal.setitimer(signal.ITIMER_REAL, 0)
    root = logging.getLogger()
    if tuple(root.handlers) != before.log_handlers:
        root.handlers = list(before.log_handlers)
    sys.stdout, sys.stderr = before.streams
    os.chdir(before.cwd)  # one system call, as a look would be (and a folder the run removed is no look's to read)
    _put_back_environ(before.environ)
    if tuple(sys.path) != before.path:
        sys.path[:] = before.path
    os.umask(before.umask)
    for signum, handler in before.handlers:
        now = _handler(signum)
        if handler is not None and now is not handler and now is not _process_handlers.get(signum):
            signal.signal(signum, handler)
    Register.clear_instance_cache()
    current_run.set(None)


def _put_back_environ(before: dict[bytes, bytes]) -> None:
    """The process's environment as ``before`` (:data:`_ENVIRON`), both Python's mapping and the C library's (what
    ``os.environ``'s own writes change: a child process's environment), in the variables that differ alone."""
    if _ENVIRON == before:
        return
    for name in _ENVIRON.keys() - before.keys():
        os.unsetenv(name)
        del _ENVIRON[name]
    for name, value in before.items():
        if _ENVIRON.get(name) != value:
            os.putenv(name, value)
            _ENVIRON[name] = value
