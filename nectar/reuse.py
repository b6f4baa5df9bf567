"""Whether a process that ended its run cleanly may take another, and what it puts back between the two.

An attempt process (:mod:`nectar.spares`) that ended its run by its own hand goes back to being a ready spare,
as Celery's pool processes and gunicorn's workers take request after request, unless its run left something behind
that the next must not inherit (:func:`left_behind`): a thread still alive, a child process, an anonymous resident
size (not a file's mapped pages) grown past its bound since it was first ready (:func:`grown_mb`). What a run changes
in the process and does not put back itself is put back (:func:`put_back`): the signal handlers, interval timer, log
handlers (the root's and every named logger's: those its run added are closed), loggers' levels, ``propagate`` and
``disabled``, ``logging.disable``'s level and standard streams as they were before it, the working directory,
environment variables, ``sys.path`` and file mode mask, the excepthooks, the sockets' default timeout, the
``warnings`` filters, the collector's switch and thresholds, the recursion limit and switch interval, the tracers
and profilers (:class:`ProcessHooks`), luigi's configuration, luigi's task instances, the run its records
name.
The ``atexit`` callbacks it registered are dropped (:func:`drop_exit_callbacks`): an attempt process, fresh or
reused, runs none (it ends by ``os._exit``, as a forked child must not run its parent's). Once a module it keeps
has stayed kept through :data:`FREEZE_AFTER` runs, what it holds leaves its collector's sight, once in its life
(:func:`out_of_sight`): each later run's collection scans that run's objects.
A file descriptor it left open cannot be put back (closed under the object that holds it, its number
would be another file's at the object's next write): its process takes no other run (:func:`look_for_open`,
:func:`left_open`).
Its chain file is executed again for each run (:func:`~nectar.catalog.loader.fresh_chain_module`), unless its module
is one the run left exactly as executed, whose file's import would make the same again (:mod:`nectar.catalog.kept`):
a chain's module globals never reach the next run changed; what the modules it imports keep does, as under Celery.
"""

from __future__ import annotations

import gc
import locale
import logging
import os
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
import types
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

import luigi.configuration
from luigi.task_register import Register

from nectar.catalog.kept import after_run as kept_after_run
from nectar.catalog.kept import snapshot as kept_snapshot
from nectar.catalog.luigi_state import drop_run_imports, given_back
from nectar.config import get_settings
from nectar.errors import InvalidSetting
from nectar.logs.format import current_run
from nectar.logs.module_handlers import RETIRED, held, loggers
from nectar.luigi_internals import config_paths
from nectar.process_threads import PROCESS_THREADS
from nectar.stdlib_internals import (
    environ_data,
    exit_callbacks,
    forget_exit_callbacks,
    logging_lock,
    parsed,
    raw_handler,
    set_environ,
    set_parsed,
    set_url_opener,
    set_warning_shower,
    url_opener,
    warning_shower,
    warnings_filters_changed,
)

#: seconds the threads a run started get to end once it has (its heartbeat's, luigi's keep-alive)
THREAD_GRACE = 0.5
#: the signals whose handlers a run may change (those Python lets set), as numbers
_SIGNALS = [int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
#: a signal's handler as Python holds it: 60 signals twice a run, ~20 ns each where ``signal.getsignal`` takes ~0.4 µs
_handler = raw_handler
#: ``os.waitid``'s option for children of every kind (Linux's ``__WALL``: those whose exit signal is not SIGCHLD too)
_WALL = 0x40000000
_PAGE = os.sysconf("SC_PAGE_SIZE")
#: by signal, the handler of the process's own that a run's work may set, which then stays from run to run: never what
#: a run changed (:func:`process_handler`)
_process_handlers: dict[int, Callable[..., None]] = {}
#: ``os.environ``'s own dictionary (:func:`~nectar.stdlib_internals.environ_data`): copied and compared in ~3.5 µs a
#: run, where the mapping's public copy and comparison decode every variable (~190 µs)
_ENVIRON = environ_data()
#: the name of a module object of this module's own, moved to the end of ``sys.modules`` by each :func:`before_run`,
#: after which each module the run imports is added (:func:`_imported_since`): where the names noted as a tuple
#: were ~68,000 instructions of each ~280,000 ``before_run`` (callgrind, ~720 modules), a pop and an insertion; no
#: import can bind it (not an identifier)
_SINCE = "nectar.reuse:before-run"
_since = types.ModuleType(
    _SINCE, "The mark of nectar.reuse.before_run in sys.modules: names after it were imported since."
)
#: this process's anonymous resident megabytes (:func:`anon_mb`) when it was first ready for a run (:func:`before_run`;
#: None: not yet, as in a process just forked): what it shares with the worker it was forked from, and what any fresh
#: process holds
_ready_mb: float | None = None
#: which of this process's file descriptors were open on which files (:func:`_open_ids`) before its first run, then
#: after its last run, but those its last look suspected (:func:`look_for_open`; None: not yet, as in a process just
#: forked)
_ids_between: frozenset[tuple[int, int, int]] | None = None
#: the descriptors the look after a run found open on a file not open between runs (:func:`look_for_open`), each
#: with its device and inode, and what it was open on: looked at again before the process takes another run
#: (:func:`left_open`)
_suspects: dict[tuple[int, int, int], str] = {}


#: how many runs in a row a chain module must stay kept (:mod:`nectar.catalog.kept`) before :func:`out_of_sight`
#: freezes it with what the process holds: the first run that leaves it kept. Most of what the freeze takes out of
#: sight is not the module (callgrind, ``PYTHONHASHSEED=0``, a served worker's reused cycles, medians: a chain that
#: changes its module every other run, frozen once at 1 and its module let go, ``put_back`` 1,192 -> 978 k
#: instructions a cycle, its collection 544 -> 296 k; at 2, 1,092 k and 382 k: a strict every-other-run changer is
#: never frozen there, and saves nothing), and a chain that keeps its module gains the same at 1 or 2 (collection
#: 393 -> 143 k, 152 k at 2): waiting protects at most one module's memory once a process (~43 kB for the benchmarks'
#: 9-class probe chain, tracemalloc), for ~100-250 k a cycle
FREEZE_AFTER = 1
#: the note of the kept module seen after the last run (None: none) and the runs in a row it stayed kept through;
#: whether :func:`out_of_sight` froze since the process was forked
_kept_note: object | None = None
_kept_runs = 0
_frozen = False


def _forked() -> None:
    global _ready_mb, _ids_between, _kept_note, _kept_runs, _frozen
    _ready_mb = None
    _ids_between = None
    _kept_note, _kept_runs, _frozen = None, 0, False
    _suspects.clear()


os.register_at_fork(after_in_child=_forked)


class LuigiConfig(NamedTuple):
    """luigi's configuration as a run found it: the files it reads (:func:`~nectar.luigi_internals.config_paths`),
    its ``DEFAULT`` options and each section's own (raw, as read: ``%(...)s`` not expanded; one ``DEFAULT`` has too
    with them)."""

    paths: tuple[str, ...]
    defaults: dict[str, str]
    sections: dict[str, dict[str, str]]


def luigi_config() -> LuigiConfig:
    """luigi's configuration now, as :class:`LuigiConfig` (:func:`~nectar.stdlib_internals.parsed`): ~3-5 µs for 8
    sections of 5 options, their copy ~1.1 µs of it, where asking the parser for each section's items took ~13-28 µs
    (timeit's best of 5, machine load ~8.5 on 2 cores)."""
    config = luigi.configuration.get_config()
    return LuigiConfig(tuple(config_paths(config)), *parsed(config))


class LoggerSettings(NamedTuple):
    """What a run's code may set on logging besides its handlers: ``logging.disable``'s level, each logger's (the
    root one too) level, ``propagate`` and ``disabled`` (set by ``logging.config``'s ``disable_existing_loggers``),
    and the factory of records and class of loggers (``logging.setLogRecordFactory``, ``setLoggerClass``: left as a
    run set them, the next runs' records were its factory's, which held what its closure held).

    Each logger's three in a list beside the list of loggers, in its order (:meth:`by_logger` pairs them): two walks'
    lists compare in C where no logger was made or changed, without hashing each logger into a dictionary (callgrind,
    a reused attempt's cycle: ~83 k instructions a walk of ~100 loggers as a dictionary)."""

    disabled_below: int
    loggers: list[logging.Logger]
    #: by logger of ``loggers``, in its order: its level, ``propagate`` and ``disabled``
    values: list[tuple[int, bool, bool]]
    #: ``logging.getLogRecordFactory()`` and ``logging.getLoggerClass()``: what makes each record and each new logger
    record_factory: Callable[..., logging.LogRecord]
    logger_class: type[logging.Logger]

    def by_logger(self) -> dict[logging.Logger, tuple[int, bool, bool]]:
        """Each logger's level, ``propagate`` and ``disabled``."""
        return dict(zip(self.loggers, self.values, strict=True))


def _logger_settings(found: list[logging.Logger] | None = None) -> LoggerSettings:
    """:class:`LoggerSettings` now: a walk of logging's loggers (~8 µs for the ~80 of an attempt process), or of those
    ``found`` by the caller's own :func:`~nectar.logs.module_handlers.loggers` (a list of its own, held as it is)."""
    found = loggers() if found is None else found
    return LoggerSettings(
        logging.Logger.manager.disable,
        found,
        [(logger.level, logger.propagate, logger.disabled) for logger in found],
        logging.getLogRecordFactory(),
        logging.getLoggerClass(),
    )


class LoggingRoots(NamedTuple):
    """logging's root logger (``logging.root``, and ``Logger.root``: the parent of each top-level logger) and the
    manager of its named loggers (``Logger.manager``, what ``logging.getLogger`` asks), which a run's code may
    replace (a hierarchy of its own, as a test framework or a logging library may make)."""

    root: logging.RootLogger
    parent: logging.RootLogger
    manager: logging.Manager


def _logging_roots() -> LoggingRoots:
    return LoggingRoots(logging.root, logging.Logger.root, logging.Logger.manager)


class ProcessHooks(NamedTuple):
    """What a run's code may set for the whole process besides logging, each of which the next runs would meet:
    ``sys.excepthook``, ``sys.unraisablehook``, ``threading.excepthook``, ``socket.setdefaulttimeout``'s timeout, and
    ``warnings``' filters (the list, which ``catch_warnings`` replaces with a copy until its exit, and its entries,
    which ``simplefilter``, ``filterwarnings`` and ``resetwarnings`` change in place) and what shows a warning
    (``warnings.showwarning``, and what ``catch_warnings(record=True)`` replaces with its list's ``append``: left
    entered, every later warning of the process went to that list); the C library's time zone as ``time`` answers
    it (``time.tzname``, ``timezone``, ``altzone``, ``daylight``: a run's ``os.environ["TZ"]`` and ``time.tzset()``
    left every later run's ``localtime`` in its zone, the variable put back) and locale (``locale.setlocale``: a
    run's ``"C"`` left every later run's text files ASCII, ``open()``'s encoding); and the collector's switch and
    thresholds (a run's ``gc.disable()`` left every later run's reference cycles uncollected but by
    :func:`put_back`'s own pass), the recursion limit and the threads' switch interval; and the tracers and profilers
    (``sys.settrace``, ``sys.setprofile``, ``threading.settrace``, ``threading.setprofile``: one left set ran on
    every call of every later run, each several times slower)."""

    excepthook: Callable[..., Any]
    unraisablehook: Callable[..., Any]
    thread_excepthook: Callable[..., Any]
    timeout: float | None
    filters: object
    entries: tuple[Any, ...]
    showwarning: Callable[..., Any]
    shower: Callable[..., Any]
    zone: tuple[tuple[str, str], int, int, int]
    #: the C library's locale, every category (``locale.setlocale(LC_ALL)``'s answer)
    locale: str
    #: whether the collector runs by itself (``gc.disable()``) and at which counts (``gc.set_threshold``), the
    #: deepest recursion (``sys.setrecursionlimit``) and how often threads switch (``sys.setswitchinterval``)
    collector: tuple[bool, tuple[int, int, int]]
    recursion: int
    switch: float
    #: the main thread's tracer and profiler (``sys.settrace``, ``sys.setprofile``) and those each new thread gets
    #: (``threading.settrace``, ``threading.setprofile``)
    tracers: tuple[Any, Any, Any, Any]
    #: ``sys.argv``, ``tempfile.tempdir``, the main thread's ``decimal`` context (a copy; None where decimal is not
    #: imported), ``urllib.request``'s installed opener, the signals the main thread blocks, the resource limits
    #: (:data:`_LIMITS`) and the nice value (review24: a run's ``decimal.getcontext().prec = 4`` summed every later
    #: run's money to 4 digits; its ``tempfile.tempdir`` in a folder it removed failed every later run's temporary
    #: file; its ``install_opener`` sent its ``Authorization`` with every later run's ``urlopen``)
    argv: tuple[str, ...]
    tempdir: str | None
    decimal: Any
    opener: Any
    blocked: frozenset[int]
    limits: tuple[tuple[int, int], ...]
    nice: int


def _process_hooks() -> ProcessHooks:
    return ProcessHooks(
        sys.excepthook,
        sys.unraisablehook,
        threading.excepthook,
        socket.getdefaulttimeout(),
        warnings.filters,
        tuple(warnings.filters),
        warnings.showwarning,
        warning_shower(),
        (time.tzname, time.timezone, time.altzone, time.daylight),
        locale.setlocale(locale.LC_ALL),
        (gc.isenabled(), gc.get_threshold()),
        sys.getrecursionlimit(),
        sys.getswitchinterval(),
        _tracers(),
        tuple(sys.argv),
        tempfile.tempdir,
        _decimal_context(),
        url_opener(),
        frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ())),
        _limits(),
        os.getpriority(os.PRIO_PROCESS, 0),
    )


#: the resource limits a run may set for its process (``resource.setrlimit``), noted and put back
_LIMITS = tuple(
    getattr(resource, name)
    for name in (
        "RLIMIT_AS",
        "RLIMIT_DATA",
        "RLIMIT_CPU",
        "RLIMIT_FSIZE",
        "RLIMIT_NOFILE",
        "RLIMIT_STACK",
        "RLIMIT_CORE",
    )
    if hasattr(resource, name)
)


def _limits() -> tuple[tuple[int, int], ...]:
    return tuple(resource.getrlimit(limit) for limit in _LIMITS)


def _decimal_context() -> Any:
    """A copy of the main thread's ``decimal`` context, where ``decimal`` is imported (None: it is not)."""
    module = sys.modules.get("decimal")
    return None if module is None else module.getcontext().copy()


def _tracers() -> tuple[Any, Any, Any, Any]:
    return sys.gettrace(), sys.getprofile(), threading.gettrace(), threading.getprofile()


@dataclass(frozen=True)
class Before:
    """What a process holds before its run, to tell what the run left (:func:`left_behind`, :func:`put_back`)."""

    threads: frozenset[threading.Thread]
    #: each signal's handler, in :data:`_SIGNALS`' order
    handlers: tuple[Any, ...]
    #: each logger holding a handler (the root one too), with its handlers; each logger's level, ``propagate`` and
    #: ``disabled`` and ``logging.disable``'s level (:func:`_logger_settings`)
    loggers: dict[logging.Logger, tuple[logging.Handler, ...]]
    settings: LoggerSettings
    #: logging's root logger and the manager of its loggers (:func:`_logging_roots`)
    roots: LoggingRoots
    #: ``sys.stdout``, ``sys.stderr``
    streams: tuple[TextIO, TextIO]
    #: the working directory, the environment (:data:`_ENVIRON`), ``sys.path`` and the file mode mask
    cwd: str
    environ: dict[bytes, bytes]
    path: tuple[str, ...]
    umask: int
    config: LuigiConfig
    #: the excepthooks, the sockets' default timeout, the warnings filters and what shows a warning
    hooks: ProcessHooks


def before_run() -> Before:
    """Note the threads, signal handlers, log handlers, modules, standard streams, working directory, environment,
    ``sys.path``, file mode mask, luigi's configuration and :class:`ProcessHooks` of this process (its main thread,
    before a run); the first time in this process, its resident size and what its descriptors are open on too
    (:func:`grown_mb`, :func:`left_open`)."""
    global _ready_mb, _ids_between
    if _ready_mb is None:
        _ready_mb = anon_mb()
    if _ids_between is None:
        _ids_between = _open_ids()
    handlers = tuple(map(_handler, _SIGNALS))
    umask = os.umask(0)
    os.umask(umask)
    found = loggers()  # one list of logging's loggers for their handlers and their settings
    _mark_imports()
    return Before(
        frozenset(threading.enumerate()),
        handlers,
        held(found),
        _logger_settings(found),
        _logging_roots(),
        (sys.stdout, sys.stderr),
        os.getcwd(),
        _ENVIRON.copy(),
        tuple(sys.path),
        umask,
        luigi_config(),
        _process_hooks(),
    )


def _mark_imports() -> None:
    """Move :data:`_SINCE`'s mark to the end of ``sys.modules`` (:func:`_imported_since`)."""
    modules = sys.modules
    modules.pop(_SINCE, None)
    modules[_SINCE] = _since


def _imported_since() -> set[str]:
    """The names of the modules imported since the last :func:`before_run`: those after its mark in ``sys.modules``,
    a dictionary, which keeps its names in the order they were added (a module imported, or imported again once a
    run's code took it out, is added last), read from its end back to the mark (none to read where the run imported
    nothing). Empty if the mark is gone (a run's code took it out): then no module's logger is one a run's import set
    up, and no module is one its code imported (:func:`_drop_run_imports`)."""
    names: set[str] = set()
    for name in reversed(sys.modules):
        if name == _SINCE:
            return names
        names.add(name)
    return set()


def _drop_run_imports() -> None:
    """The modules of the chains folder the run's code imported (inside ``run()``) taken out of ``sys.modules``
    (:func:`~nectar.catalog.luigi_state.drop_run_imports`): the next run imports each as its file is then, as a fresh
    process does."""
    names = _imported_since()
    if names:
        drop_run_imports(names, str(get_settings().chains_dir))


def process_handler(signum: int, handler: Callable[..., None]) -> None:
    """Make ``handler`` the process's own for ``signum``, set now unless it is already: one that a run's work sets
    (an attempt's lease, which acts on the attempt running then, if any) and that stays set from run to run, which
    :func:`put_back` leaves as it is (in the main thread only, as any handler)."""
    _process_handlers[signum] = handler
    if _handler(signum) is not handler:
        signal.signal(signum, handler)


def drop_exit_callbacks() -> None:
    """In an attempt process between runs, once :func:`put_back`: drop every ``atexit`` callback it holds, none run.
    It runs none ever (it ends by ``os._exit``, as a forked child must not run its worker's, which it inherited), so
    nothing is lost; kept, those its runs registered (a task's clean-up, a library's first use of a client, the
    registry's writer's) piled up run after run, with whatever each held (the arguments it was given, a bound
    method's object). One C call a run where none was registered (~40 ns).

    Not in :func:`put_back`, which tests call in their own process, whose callbacks are its own to run."""
    if exit_callbacks():
        forget_exit_callbacks()


def out_of_sight() -> None:
    """In an attempt process between runs, once :func:`put_back` collected what its run left in cycles and with no
    build of a run held (its spare let go of the one its run used): once the chain module it keeps
    (:func:`~nectar.catalog.kept.snapshot`) has stayed kept through :data:`FREEZE_AFTER` runs in a row, what the
    process holds leaves its collector's sight (``gc.freeze``), as its worker's objects left it at the fork. Each
    later ``put_back``'s full collection then scans the next run's objects alone, not the module's classes,
    functions and parameters, its note, the registry's connections and luigi's state made by the process's first
    run.

    Once in the process's life, never again, and never thawed: ``gc.unfreeze`` has no part of its own (it thaws what
    the spare froze at its fork too: ~22 M instructions a full collection from then on, ~13.5 MB of shared pages
    copied, round 61's review15 T1), and a process that retired rather than thaw forked a spare every other run for
    a chain that changes its module every other run. A module let go after the freeze (a run changed it, or its file
    changed) stays frozen, its reference cycles never freed, with whatever else was live at that one moment and
    later let go; the process's next modules stay in sight, each collected as let go. That cost is bounded: one
    module's worth, once, until the process ends at its ``runs_per_process``. A chain whose runs change its module
    more often than every :data:`FREEZE_AFTER` + 1 runs is never frozen, and costs what it cost before."""
    global _kept_note, _kept_runs, _frozen
    note = kept_snapshot()
    _kept_runs = 0 if note is None else _kept_runs + 1 if note is _kept_note else 1
    _kept_note = note
    if not _frozen and _kept_runs >= FREEZE_AFTER:
        gc.freeze()
        _frozen = True


def left_behind(before: Before, max_rss_mb: int) -> str | None:
    """Why this process must not take another run after the one that ended (None: it may): a thread the run
    started (not one of the process's own: :func:`process_thread`) still alive after :data:`THREAD_GRACE` seconds,
    a child process of the run (even one that ended, not
    waited for), a resident size grown by more than ``max_rss_mb`` since the process was first ready (0: no bound):
    :func:`grown_mb`."""
    deadline = time.monotonic() + THREAD_GRACE
    started = set(threading.enumerate()) - before.threads
    if started:  # the process's own are read only then (a weak set's iteration, in Python)
        started -= set(PROCESS_THREADS)
    for thread in started:
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
    """The anonymous resident megabytes this process added since it was first ready for a run (:func:`before_run`;
    all of them before): what its runs kept, which a fresh process would not hold, and what
    ``NECTAR_PROCESS_MAX_RSS_MB`` bounds.

    Anonymous pages alone (``statm``'s resident less its shared: the file-backed and shared-memory pages): a file a
    run maps and keeps mapped (a memory-mapped SQLite or numpy file, a model's weights) is resident as its pages are
    read, up to the file's size, but those pages are the page cache's, which the kernel takes back at will and which a
    fresh process mapping the same file would find resident again: retiring the process gives back none of them,
    and a 300 MB file mapped by a run had every process past a 200 MB bound retired after each run. Not counted
    either: shared memory a run keeps mapped (``multiprocessing.shared_memory``, ``MAP_SHARED`` anonymous), which
    ``statm`` counts with the file-backed pages.

    Its resident size alone counts the pages it shares with the worker it was forked from: a worker itself past the
    bound (``nectar worker --clock`` imports the chains) had every attempt process past it after every run, each
    retired and forked again. Its private size (USS, ``/proc/self/smaps_rollup``'s ``Private_*``) leaves them out
    but costs the kernel a walk of the process's page tables on each read (~4.4-5.6 ms at 335 MB resident, ~0.3 ms
    at 55 MB, where ``statm`` takes ~2.3 µs), after every run; and counts the shared pages a run wrote to (copied),
    which a fresh process would copy again in its run: retiring the process gives back none of them. So: one
    ``statm`` read a run, as before, and one when the process is first ready."""
    return anon_mb() - (_ready_mb or 0.0)


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
    """This process's resident size in megabytes (:func:`_statm`)."""
    return _statm()[1] * _PAGE / 2**20


def anon_mb() -> float:
    """This process's anonymous resident megabytes: its resident size less its file-backed and shared-memory pages
    (``statm``'s resident less its shared: :func:`_statm`), the same one read."""
    statm = _statm()
    return (statm[1] - statm[2]) * _PAGE / 2**20


def _statm() -> list[int]:
    """``/proc/self/statm``'s pages (size, resident, shared, ...): one ``read`` of a line of a few numbers, its
    descriptor opened and closed, where a text file object made after each run also asked the kernel twice for the
    file's kind and size, once whether it is a terminal (ENOTTY) and twice where it stood: 9 system calls, now 3."""
    statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return [int(pages) for pages in os.read(statm, 256).split()[:3]]
    finally:
        os.close(statm)


def put_back(before: Before) -> str | None:
    """Undo what a run changed in this process and does not undo itself (each step's log capture is undone as the
    step ends: :func:`~nectar.logs.capture.redirect_output`): the signal handlers it set, its interval timer, the
    log handlers of every logger (:func:`_put_back_log_handlers`), their levels, ``propagate``, ``disabled`` and
    ``logging.disable`` (:func:`_put_back_logger_settings`) and the standard streams if its code changed them,
    the working directory, environment variables, ``sys.path``, file mode mask, the excepthooks, the sockets' default
    timeout, the ``warnings`` filters, the collector's switch and thresholds, the recursion limit and switch interval,
    the tracers and profilers (:func:`_put_back_process_hooks`) and luigi's configuration (what a fresh
    process of the worker's would start its run with) and event handlers (those of other chains, taken off for the
    run), luigi's cache of task instances (the next run makes its own), the run its records name, ``sys.argv``,
    ``tempfile.tempdir``, the ``decimal`` context, ``urllib.request``'s opener, the blocked signals, the resource
    limits and the nice value (:class:`ProcessHooks`: what of those cannot be put back is answered, and the process
    then takes no other run). A handler of the process's own (:func:`process_handler`) stays. Last, what the
    run left in reference cycles is collected: the objects its run kept until it ended (its luigi worker, its tasks,
    a traceback: 100-170 a trivial run) sat in the collector's oldest generation until its next full pass, every few
    runs, and were counted with the process's own (thousands, where ~600 are the process's: what the spare's
    ``gc.freeze`` left in sight); and a file one of them held open is closed before :func:`look_for_open` counts them.
    What stays is bounded: the dead weak references CPython's ``sqlite3`` keeps of each connection's cursors (pruned
    every 200 cursors a connection) and its statement cache (128 a connection) are most of what a process's count
    grows by from its first run (~600 tracked objects) to its 1,000th (~1,100-1,400).

    What it costs (callgrind, ``PYTHONHASHSEED=0``, one process of 30 then 100 trivial runs against luigid, each a
    :class:`~nectar.build.Build` between :func:`before_run` and :func:`left_open` as a spare makes it: the instructions
    a run by the difference): 10.18 M a run with it; 10.38 M with it left out but luigi's instance cache still
    cleared (the run's garbage then sits uncollected, and runs cost more as it grows); 11.47 M without its
    ``gc.collect``; 9.64 M with nothing put back, luigi's cache keeping every run's task and what it holds (memory
    that grows run after run). Its collection is ~0.44 M of a run's: freeing the run's garbage, which a process that
    takes another run frees at some point. Its logging roots, record factory and logger class noted and compared, and
    luigi's configuration read as the parser holds it, the between-runs work cost less, not more (callgrind,
    ``PYTHONHASHSEED=0``, one process of 30 then 130 cycles of ``before_run``, ``left_behind``, ``put_back``,
    ``look_for_open``, ``left_open`` with luigi's 8 sections of 5 options, by the difference): 15.07 -> 14.91 M a
    cycle where the run changed nothing, 15.19 -> 14.94 M where it set an option of luigi's. Its
    :class:`ProcessHooks` noted and compared where a run changed none: 14.7 k instructions a run (callgrind,
    ``PYTHONHASHSEED=0``, 1,000 then 11,000 pairs of :func:`_process_hooks` and :func:`_put_back_process_hooks` in one
    process, by the difference), ~0.9 µs; the whole cycle's count moved by up to ±0.3 M between two runs of it.
    """
    signal.setitimer(signal.ITIMER_REAL, 0)
    found = loggers()  # one list of logging's loggers for their handlers and their settings, while neither changes
    if _put_back_log_handlers(before, found):  # the roots put back, or a handler taken off and closed (its code ran)
        found = loggers()
    _put_back_logger_settings(before, found)
    sys.stdout, sys.stderr = before.streams
    os.chdir(before.cwd)  # one system call, as a look would be (and a folder the run removed is no look's to read)
    _put_back_environ(before.environ)
    if tuple(sys.path) != before.path:
        sys.path[:] = before.path
    os.umask(before.umask)
    unmade = _put_back_process_hooks(before.hooks)
    handlers = tuple(map(_handler, _SIGNALS))
    if handlers != before.handlers:  # one comparison of the same objects, where a run changed none
        for signum, handler, now in zip(_SIGNALS, before.handlers, handlers, strict=True):
            if handler is not None and now is not handler and now is not _process_handlers.get(signum):
                signal.signal(signum, handler)
    _put_back_luigi_config(before.config)
    given_back()  # the event handlers of other chains than the run's (:func:`~nectar.catalog.luigi_state.held_to`)
    Register.clear_instance_cache()
    current_run.set(None)
    _drop_run_imports()
    gc.collect()
    kept_after_run()  # the chain module kept for the next run, if the run left it exactly as executed
    return unmade


def _put_back_log_handlers(before: Before, found: list[logging.Logger]) -> bool:
    """Every logger's handlers as ``before`` (a handler the run added, then held by no logger, closed: its file with
    it), but those of a logger named after a module the run imported: what that module's import set up, as it does
    in a fresh process's run (its import is not made again in this process's next ones). A handler the run's code
    added to a named logger was added again by each run: at 1,000 runs a process, each record of that logger written
    1,000 times, and as many files left open by a ``FileHandler``.

    Each logger's list of handlers is changed in place under logging's lock, as ``removeHandler`` changes it: a
    thread of the process logging meanwhile, going down the list, no longer reaches a handler taken off (a new list
    left it on the old one, to a closed ``FileHandler``, which opens its file again: a descriptor left open, a line in
    a file the run's code wrote to), and a handler another thread adds or removes meanwhile is not lost.

    A handler added since ``before`` by a thread that outlives the run (one a module keeps, started as the chain was
    imported ahead) is taken off as the run's: logging notes no adder, and telling them apart would take a hook on
    every ``addHandler`` of the process (as review2's import hook, reverted in b9f7b82, hooked every import); the
    README's reuse section says so, and that such a module adds its handler as it is imported, to its own logger.

    logging's root logger and the manager of its loggers as ``before`` too (:class:`LoggingRoots`), if the run's code
    replaced them: the process's next runs logged to the run's root, not the worker's (none of its handlers), and the
    handlers the run added to its own were left open. ``found``: the loggers of the hierarchy in place
    (:func:`~nectar.logs.module_handlers.loggers`). Whether it changed anything."""
    replaced = _logging_roots() != before.roots
    if not replaced and held(found) == before.loggers:
        return False
    imported = _imported_since()
    added: list[logging.Handler] = []
    with logging_lock():
        if replaced:  # the run's hierarchy let go of, its handlers closed
            added += [handler for handlers in held().values() for handler in handlers]
            logging.root, logging.Logger.root, logging.Logger.manager = before.roots
        now = held()
        for logger in now.keys() | before.loggers.keys():  # a handler its module's execution retired stays off
            was = tuple(handler for handler in before.loggers.get(logger, ()) if handler not in RETIRED)
            handlers = now.get(logger, ())
            if handlers == was or (not was and logger.name in imported):
                continue
            logger.handlers[:] = was
            added += [handler for handler in handlers if handler not in was]
        kept = {handler for handlers in held().values() for handler in handlers}
    for handler in added:
        if handler not in kept:
            handler.close()
    return True


def _put_back_logger_settings(before: Before, found: list[logging.Logger]) -> None:
    """``logging.disable``'s level, the record factory, logger class and each logger's level, ``propagate`` and
    ``disabled`` as ``before``; a logger the run made (``logging.getLogger``) as a new one is (NOTSET, propagating,
    enabled), but that of a module the run imported: what that module's import set up, as in a fresh process's run.
    ``found``: logging's loggers now (:func:`~nectar.logs.module_handlers.loggers`)."""
    now = _logger_settings(found)
    if now == before.settings:
        return
    if now.disabled_below != before.settings.disabled_below:
        logging.disable(before.settings.disabled_below)
    if now.record_factory is not before.settings.record_factory:
        logging.setLogRecordFactory(before.settings.record_factory)
    if now.logger_class is not before.settings.logger_class:
        logging.setLoggerClass(before.settings.logger_class)
    imported = _imported_since()
    noted = before.settings.by_logger()
    for logger, settings in now.by_logger().items():
        was = noted.get(logger)
        if was is None and logger.name in imported:
            continue
        level, propagate, disabled = was or (logging.NOTSET, True, False)
        if settings == (level, propagate, disabled):
            continue
        if logger.level != level:
            logger.setLevel(level)  # logging's cache of each logger's answers cleared with it
        logger.propagate, logger.disabled = propagate, disabled


def _put_back_process_hooks(before: ProcessHooks) -> str | None:
    """The excepthooks, the sockets' default timeout, the warnings filters, what shows a warning, the time zone, the
    locale, the collector's switch and thresholds, the recursion limit, the switch interval, the tracers, profilers as
    ``before`` (:class:`ProcessHooks`), each where the run changed it (the zone read again from the environment, put
    back first); the filters, changed, are the process's list again with its entries, and ``warnings`` is told
    (:func:`~nectar.stdlib_internals.warnings_filters_changed`), as ``catch_warnings``' exit tells it: what a
    module's registry noted under the run's filters (a warning ignored, once shown) is not what the next run's
    filters decide. The list is a new one with the entries as before (the next :func:`before_run` notes it), as
    ``catch_warnings`` makes one. Then the libraries' state and the process's limits: what could not be put back, else
    None (:func:`_put_back_process_limits`)."""
    if sys.excepthook is not before.excepthook:
        sys.excepthook = before.excepthook
    if sys.unraisablehook is not before.unraisablehook:
        sys.unraisablehook = before.unraisablehook
    if threading.excepthook is not before.thread_excepthook:
        threading.excepthook = before.thread_excepthook
    if socket.getdefaulttimeout() != before.timeout:
        socket.setdefaulttimeout(before.timeout)
    if warnings.showwarning is not before.showwarning:
        warnings.showwarning = before.showwarning
    if warning_shower() is not before.shower:
        set_warning_shower(before.shower)
    if warnings.filters is not before.filters or tuple(before.filters) != before.entries:
        warnings.filters = list(before.entries)
        warnings_filters_changed()
    if (time.tzname, time.timezone, time.altzone, time.daylight) != before.zone:
        time.tzset()  # from the environment, put back before (:func:`put_back`)
    if locale.setlocale(locale.LC_ALL) != before.locale:
        locale.setlocale(locale.LC_ALL, before.locale)
    if (gc.isenabled(), gc.get_threshold()) != before.collector:
        (gc.enable if before.collector[0] else gc.disable)()
        gc.set_threshold(*before.collector[1])
    if sys.getrecursionlimit() != before.recursion:
        sys.setrecursionlimit(before.recursion)
    if sys.getswitchinterval() != before.switch:
        sys.setswitchinterval(before.switch)
    if _tracers() != before.tracers:  # in the main thread: its own tracer and profiler, as the run's code set them
        trace, profile, thread_trace, thread_profile = before.tracers
        sys.settrace(trace)
        sys.setprofile(profile)
        threading.settrace(thread_trace)
        threading.setprofile(thread_profile)
    _put_back_library_state(before)
    return _put_back_process_limits(before)


def _put_back_library_state(before: ProcessHooks) -> None:
    """``sys.argv``, ``tempfile.tempdir``, the ``decimal`` context (a fresh process's where the run imported decimal)
    and ``urllib.request``'s opener as ``before``."""
    if tuple(sys.argv) != before.argv:
        sys.argv = list(before.argv)
    if tempfile.tempdir != before.tempdir:
        tempfile.tempdir = before.tempdir
    module = sys.modules.get("decimal")
    if module is not None:
        module.setcontext(before.decimal.copy() if before.decimal is not None else module.DefaultContext.copy())
    if url_opener() is not before.opener:
        set_url_opener(before.opener)


def _put_back_process_limits(before: ProcessHooks) -> str | None:
    """The blocked signals, the resource limits and the nice value as ``before``; what could not be put back (a hard
    limit lowered, the nice value raised: a process without privilege cannot undo either), else None."""
    if frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ())) != before.blocked:
        signal.pthread_sigmask(signal.SIG_SETMASK, before.blocked)
    try:
        for limit, was, now in zip(_LIMITS, before.limits, _limits(), strict=True):
            if now != was:
                resource.setrlimit(limit, was)
        if os.getpriority(os.PRIO_PROCESS, 0) != before.nice:
            os.setpriority(os.PRIO_PROCESS, 0, before.nice)
    except (OSError, ValueError) as exc:
        return f"its run changed a resource limit or the nice value, which cannot be put back here ({exc})"
    return None


def _put_back_luigi_config(before: LuigiConfig) -> None:
    """luigi's configuration as ``before``, if the run changed it (``get_config().set(...)``, a file added with
    ``luigi.configuration.add_config_path``): the files it reads, each section and option, made luigi's in one step
    (:func:`~nectar.stdlib_internals.set_parsed`): a thread of the process reading it meanwhile (luigi's keep-alive,
    a thread a module keeps) finds it whole, never a section taken off and not yet put back."""
    if luigi_config() == before:
        return
    config = luigi.configuration.get_config()
    config_paths(config)[:] = before.paths
    set_parsed(config, before.defaults, before.sections)


def look_for_open() -> None:
    """Look for a file descriptor the run that ended (and was put back) left open on a file or a pipe, which cannot
    be closed here (the object holding it would, at its next write or close, act on whatever file was given its number
    since) and would be carried to the next runs, one more each time; those found are looked at again before the
    process takes another run (:func:`left_open`). Not counted: sockets and other descriptors without a path (an event
    loop's), which the clients a module keeps hold from run to run (a connection pool: boto3's to S3, opened by a
    process's first run), as they keep any other state; and those of the process's own files that a run opens and
    closes (its step's live logs, made ahead) or opens for good (its registry's: a checkpointer's connection, the
    file's WAL index).

    One listing of ``/proc/self/fd`` a run and an ``fstat`` of each (:func:`_open_ids`): while the same descriptors
    are open on the same files as after the process's last run (before its first run, for its first), none was left;
    else each descriptor open on a file it was not open on then (a number new, or given to another file) is
    suspected, if a file or a pipe (a ``readlink`` each, ~9 µs). By descriptor, not by how many are open on each file:
    a count missed a file a run left open on the number of a socket the process closed, and one a run opened again
    as the process's own descriptor on it was closed (its stdin, a module's file). A file the process's own code
    opens again for good between runs (closing the one it held) is suspected, and retires the process as a file a run
    left open: a fork wasted, nothing lost."""
    global _ids_between
    _suspects.clear()
    ids = _open_ids()
    if ids == _ids_between:
        return
    new = ids - (_ids_between or frozenset())
    if new:
        targets = _open_targets({fd for fd, _, _ in new})
        _suspects.update({(fd, dev, ino): targets[fd] for fd, dev, ino in new if fd in targets})
    _ids_between = ids - _suspects.keys()


def left_open() -> str | None:
    """Why this process must not take another run (None: it may): a descriptor that :func:`look_for_open` found open
    after its last run on a file it was not open on between runs, still open on the same file (device and inode)
    now, once the process has set itself up for its next run. A file a thread of the process's own (a checkpointer, a
    thread a module keeps, luigi's keep-alive) was opening as the look was made is not one its run left, and is closed
    by now: at that first look alone, it retired the process (a fork wasted, nothing lost). Nothing to do (no system
    call) when that look found none."""
    if not _suspects:
        return None
    still = Counter(what for (fd, dev, ino), what in _suspects.items() if _open_on(fd) == (dev, ino))
    _suspects.clear()
    if not still:
        return None
    more = [f"{what} ({n})" if n > 1 else what for what, n in still.items()]
    return f"its run left open {len(more)} file descriptor(s): {', '.join(sorted(more))}"


def _open_on(fd: int) -> tuple[int, int] | None:
    """The device and inode of what ``fd`` is open on (None: it is closed)."""
    try:
        found = os.fstat(fd)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _open_ids() -> frozenset[tuple[int, int, int]]:
    """Each file descriptor this process has open, with the device and inode of what it is open on (``fstat``: no
    path walked, as ``readlink`` of ``/proc/self/fd/N`` does); not the one :func:`os.listdir` opened to read them."""
    ids = []
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            found = os.fstat(fd)
        except OSError:  # the listing's own, closed since
            continue
        ids.append((fd, found.st_dev, found.st_ino))
    return frozenset(ids)


def _open_targets(fds: set[int]) -> dict[int, str]:
    """By file descriptor of ``fds``, the file or pipe it is open on (a pipe as ``pipe``); not the process's own files
    that runs open (:func:`_own_files`), nor sockets and the other descriptors without a path (:func:`look_for_open`),
    nor one closed since."""
    found: dict[int, str] = {}
    own, folder = _own_files()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since
            continue
        if target.startswith("pipe:["):
            found[fd] = "pipe"
        elif target.startswith("/") and not target.startswith(own) and target != folder:
            found[fd] = target
    return found


def _own_files() -> tuple[tuple[str, ...], str | None]:
    """The paths of the process's own files that its runs open, as :func:`os.readlink` names them: its SQLite
    registry's (the file and those beside it: WAL, index, writer lock; none for PostgreSQL) and the live logs
    folder's (its steps' logs, made ahead); none where its settings cannot be read (a process that is no role of
    ours). Beside them, the SQLite registry's folder itself, that one path only (not what is in it): SQLite opens it
    for a moment to sync it (open, ``fdatasync``, close) as a connection first syncs its WAL, from whichever thread
    writes or checkpoints; on a disk slow to sync, that outlasts both looks (the process's set-up between them) and
    retired the process as if its run had left the folder open ("its run left open 1 file descriptor(s): <data
    folder>", seen once in a served run)."""
    try:
        settings = get_settings()
    except InvalidSetting:
        return (), None
    live = os.path.join(os.path.realpath(settings.live_logs_dir), "")
    if settings.database_url:
        return (live,), None
    registry = os.path.realpath(settings.registry_path)
    return (live, registry), os.path.dirname(registry)


def _put_back_environ(before: dict[bytes, bytes]) -> None:
    """The process's environment as ``before`` (:data:`_ENVIRON`), both Python's mapping and the C library's (what
    ``os.environ``'s own writes change: a child process's environment), in the variables that differ alone."""
    if _ENVIRON == before:
        return
    set_environ({**dict.fromkeys(_ENVIRON.keys() - before.keys()), **before})
