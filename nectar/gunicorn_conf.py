"""Gunicorn settings for the API, read from the environment (``gunicorn -c python:nectar.gunicorn_conf``)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import stat
import sys
import tempfile
from queue import Empty, SimpleQueue
from typing import Any, Protocol

from nectar.config import OPENED, REFUSED, REGISTRY_VERDICT_FD, GunicornSettings, host_port
from nectar.deferred_imports import API_ABSENT, API_LAZY_PATTERNS, API_UNUSED, Deferral


class _Log(Protocol):
    """gunicorn's error log (``glogging.Logger``, here :class:`nectar.gunicorn_ext.RedactingLogger`), as the hooks
    use it."""

    def warning(self, msg: str, *args: object, exc_info: bool = ...) -> None: ...

    def error(self, msg: str, *args: object) -> None: ...


class _Config(Protocol):
    """gunicorn's ``Config`` (the settings this file gives, parsed), as the hooks read it."""

    preload_app: bool
    #: each ``bind``, parsed: ``(host, port)``, a unix socket's path, or a descriptor (``fd://``)
    address: list[tuple[str, int] | str | int]
    is_ssl: bool


class _Application(Protocol):
    """gunicorn's application (``WSGIApplication``): its ``wsgi()`` is the app, loaded once (``preload_app``)."""

    def wsgi(self) -> object: ...


class Arbiter(Protocol):
    """gunicorn's master (``gunicorn.arbiter.Arbiter``), the ``server`` its hooks are given."""

    cfg: _Config
    app: _Application
    log: _Log
    #: the signals its handler queued for its loop (gunicorn 27)
    SIG_QUEUE: SimpleQueue[int]
    #: its listening sockets (gunicorn's wrappers, which answer a socket's methods)
    LISTENERS: list[Any]


class Worker(Protocol):
    """A worker as the hooks see it: gunicorn's ``Worker``, with :class:`nectar.gunicorn_ext.ReadTimeoutWorker`'s
    settings (set on any worker class, as this file names that one)."""

    pid: int
    read_timeout: float
    keepalive_requests: int


#: the variables below, read by the parser ``nectar serve`` and ``nectar api`` check them with before they start
#: gunicorn (a blank one is its default; a bad one stops the start with the same line naming it)
_SETTINGS = GunicornSettings()
bind = _SETTINGS.bind
workers = _SETTINGS.workers
# threads let one worker answer status polls while another request waits on S3 or luigid; each request must
# arrive (line, headers, body) within NECTAR_READ_TIMEOUT seconds of its first byte, or its connection is closed
worker_class = "nectar.gunicorn_ext.ReadTimeoutWorker"
threads = _SETTINGS.threads
timeout = 30
# gunicorn 25+ listens on a control socket (gunicornc: change the workers, reload, shut down), by default one path
# for every gunicorn of a user: a side door, and each new API took it over from the last one. The service has none.
control_socket_disable = True
graceful_timeout = 10
# each worker tells the master it is alive by touching a file of its own (gunicorn's heartbeat: a utimensat at each
# pass of its loop, ~1.6 a request): one in memory where there is a memory file system, as gunicorn advises, not an
# inode of the disk's made and freed with each worker and dirtied at every pass (~0.6 us of kernel CPU more a touch)
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) else None
# a client told to come back after Retry-After seconds (a full queue's 503) and reusing its connection must find it
# open: an idle connection is kept that long and 5 s more (it was 5 s, the default Retry-After itself: a client that
# waited exactly as told met a reset)
keepalive = _SETTINGS.retry_after + 5
# a worker recycled now and then keeps memory flat over weeks (NECTAR_API_MAX_REQUESTS=0: never), give or take 10 %
max_requests = _SETTINGS.max_requests
max_requests_jitter = max_requests // 10
loglevel = _SETTINGS.log_level
# credentials in URLs redacted from the access log; text records escaped, one line each
logger_class = "nectar.gunicorn_ext.RedactingLogger"
accesslog = os.environ.get("NECTAR_ACCESS_LOG") or None
errorlog = "-"
if os.environ.get("NECTAR_LOG_FORMAT", "").strip().lower() == "json":
    # gunicorn's own messages, its access log and the app's events (with their run ids): one JSON object a line
    _handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["run_id"],
        "stream": "ext://sys.stderr",
    }
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "nectar.logs.format.JsonFormatter"}},
        "filters": {"run_id": {"()": "nectar.logs.format.RunIdFilter"}},
        "handlers": {"json": _handler},
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["json"], "propagate": False},
        },
    }

# the app is imported once, in the master, and its workers are forked from it: they share its pages (and a worker
# recycled after max_requests starts at once); what must not cross a fork is opened later, in each worker (the
# registry's connections, per process and thread; boto3's client; luigid's session)
preload_app = True
# no collection runs while the app is imported and made: its objects live as long as the master, and each collection
# walked every one made so far (~10 % of the master's CPU to its first fork); the first fork freezes them and turns the
# collector back on (pre_fork), as CPython advises a process that forks without exec (gc.freeze's documentation). The
# few cycles the imports leave are frozen with the rest (~2,400 objects, against ~60,000 kept)
gc.disable()
# what the app's libraries import and it never uses stays unloaded until the app is loaded (when_ready): ~9 MB in
# the master and in each worker, a third of the master's start; marshmallow's validators compile their patterns on
# first use (~50 ms of the master's start, for an e-mail validator the API never calls)
_DEFERRAL = Deferral(API_UNUSED, API_ABSENT, API_LAZY_PATTERNS)


def _fewer_arenas() -> None:
    from nectar.gunicorn_ext import few_malloc_arenas

    few_malloc_arenas()  # before any thread: each worker's threads share two malloc arenas, not one each


_fewer_arenas()

# every worker writes its request latencies here, and /metrics adds them up (prometheus_client reads this
# variable when it is imported, which the app does after this file ran); removed when gunicorn exits, and a
# folder left by a gunicorn that could not remove it (SIGKILL) is removed by the next one to start
_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    from nectar.gunicorn_ext import make_metrics_folder, remove_orphan_metrics

    remove_orphan_metrics(tempfile.gettempdir())
    # the lock beside it, held while this gunicorn lives (by its workers too), tells the next one it is not gone
    _METRICS_DIR, _METRICS_LOCK = make_metrics_folder(tempfile.gettempdir())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR


#: seconds each request may take to arrive (line, headers, body)
READ_TIMEOUT = _SETTINGS.read_timeout
# requests a kept-alive connection carries before the answer to the last one closes it (0: no bound): the clients of a
# recycled worker, all reconnected to its sibling before its successor started, spread over both again
KEEPALIVE_REQUESTS = _SETTINGS.keepalive_requests


def _import_what_workers_would() -> None:
    """The modules every worker imported by itself on its first requests, each ~0.5-0.8 ms of CPU and pages of its
    own, imported in the master before it forks so that the workers share them: the thread pool of gunicorn's gthread
    worker (``concurrent.futures`` loads it lazily), the IDNA codec (werkzeug encodes each request's host with it), and
    the SHA-512 that ``random`` hashes a seed of bytes with: gunicorn seeds each worker's ``random`` as it starts
    (``util.seed``: ``random.seed(os.urandom(64))``), and from Python 3.12 on ``random`` imports its hash (``_sha2``)
    at its first such seed, not with itself. A seed of bytes given to an instance of its own imports it here, the
    master's own ``random`` left as it was.
    """
    import concurrent.futures.thread  # noqa: F401
    import encodings.idna  # noqa: F401
    import random

    random.Random(b"")


def pre_fork(server: Arbiter, worker: Worker) -> None:
    """Before each worker is forked: the preloaded app's chains loaded in the master, the modules each worker would
    import by itself imported and (once) what it would make on its first requests made (:func:`_warm_app`), then the
    master's objects leave the garbage collector's generations, so that no collection in a worker writes to their
    pages.

    A worker forked without the chains loaded them on its first request (a recycled one too: ~90 ms of CPU for
    the status benchmark's chains, 130 warm lookups); loaded here once, every worker starts with them, shared.

    Each chain file is executed here only once a probe child executed it to its end within ``AHEAD_BUDGET`` (2 s;
    ``ChainCatalog.refresh_ahead``): one whose import hangs (a share that does not answer) is listed by the workers
    as not executed yet, and their reads probe it again (patiently, in the worker) until it ends or changes, where it
    held the master, and the whole API, until it ended. The workers' reads wait for a changed file's probe up to the
    budget (``reads_wait``): a saved file that imports within it is live on that very request.

    The collector, off while the app was loaded (see ``gc.disable()`` above), is on again once they are frozen.
    """
    verdict = None
    if server.cfg.preload_app:
        service = getattr(server.app.wsgi(), "extensions", {}).get("nectar")
        if service is not None:  # the API (a benchmark's hello world has none)
            from nectar.catalog.loader import AHEAD_BUDGET  # the app's import made it

            try:  # each file executed here once a probe child ended it within the budget: a hung one holds no start
                service.catalog.refresh_ahead(AHEAD_BUDGET, reads_wait=True)  # then a stat per file, at each fork
            except Exception:  # raised here it would stop gunicorn's master (a folder removed mid-scan): the
                # worker loads the chains on its first request instead, and answers that request's error itself
                server.log.warning("could not load the chains before forking a worker", exc_info=True)
            verdict = _open_registry(server, service)
    _tell_supervisor(verdict)  # before the fork: no worker inherits the pipe
    _import_what_workers_would()
    _warm_app(server)  # last: an import empties the caches of abc's checks (sqlite3's registers its Row)
    gc.freeze()
    gc.enable()  # off since this file was read: on for the master from now on, and for every worker it forks


def _open_registry(server: Arbiter, service: Any) -> bytes | None:
    """A SQLite registry opened in the master, once: its schema checked (or brought up to date) here and not by each
    worker, a recycled one too, on its first request (~5 ms of CPU and a write transaction each). The master keeps
    no connection (nothing of SQLite's crosses a fork) and each worker's connections check the schema's version as
    they open, so a newer release's migration since is still refused. PostgreSQL's store is left to each worker:
    its pool runs threads, which a master that forks must not have.

    Where the schema was brought up to date here, the master keeps its turn at the file (``Writers``: a descriptor
    of ``<file>-writer``, no lock held outside a write) for its life, and each worker is forked with a copy of it:
    harmless, as a POSIX lock is not inherited, the worker takes its turns through its own (``_WRITERS`` is keyed
    by pid), and the copy is never closed in the worker (``Writers.close`` acts in the process that made it alone;
    a close of any descriptor of the file would drop the worker's own lock on it: ``tests/nectar/
    test_sqlite_writers.py``). Its checkpointer starts no thread here: it starts one every ``CHECKPOINT_TURNS``
    turns, and a migration is one.

    What ``serve``'s supervisor is told of it (:func:`nectar.supervisor.refuse_a_newer_registry`, which otherwise
    opens the registry itself): opened, refused (and why), or None where none was opened here (PostgreSQL's, an
    error that is not ours: the supervisor opens it to see)."""
    from nectar.registry import dialect_of

    if dialect_of(service.settings) != "sqlite":
        return None
    from nectar.errors import NectarError, RegistryTooNew

    try:
        service.runs  # noqa: B018 (a cached property: opened once)
    except NectarError as exc:  # ours names its cause in one line (a newer release's schema): no traceback
        server.log.warning("could not open the run registry before forking a worker: %s", exc)
        return REFUSED + str(exc).encode() if isinstance(exc, RegistryTooNew) else None
    except Exception:  # each worker opens it on its first request instead, and answers that request's error itself
        server.log.warning("could not open the run registry before forking a worker", exc_info=True)
        return None
    return OPENED


def _supervisors_pipe() -> int | None:
    """The descriptor ``serve``'s supervisor named for this master's word on the registry (:func:`_tell_supervisor`),
    if any. Only the pipe of this process's parent, the supervisor (:data:`nectar.lifeline.SUPERVISOR_VAR`): a
    variable left in the environment of a gunicorn started otherwise names no descriptor of its own (its stderr,
    say)."""
    fd = os.environ.get(REGISTRY_VERDICT_FD, "")
    if not fd.isdigit():
        return None
    from nectar.lifeline import SUPERVISOR_VAR

    if os.environ.get(SUPERVISOR_VAR) != str(os.getppid()):
        return None
    try:  # a descriptor closed since (by a chain file as the app loaded), or its number taken by a file: not it
        return int(fd) if stat.S_ISFIFO(os.fstat(int(fd)).st_mode) else None
    except OSError:
        return None


def _tell_supervisor(verdict: bytes | None) -> None:
    """``verdict`` (:func:`_open_registry`'s) written to ``serve``'s supervisor, on the pipe it named (once: the pipe
    is closed then, and forgotten, before the first fork); nothing where no supervisor waits for it."""
    fd = _supervisors_pipe()
    os.environ.pop(REGISTRY_VERDICT_FD, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):  # the supervisor is gone: gunicorn's master stops with it (nectar.lifeline)
        if verdict is not None:
            os.write(fd, verdict)
    with contextlib.suppress(OSError):  # closed already: what raised here stopped gunicorn's master before its fork
        os.close(fd)


# the supervisor's pipe is not handed to what the master runs as it loads the app (a command a chain file runs):
# a copy held there would keep the supervisor from the pipe's end (it waits its patience, then opens the registry
# itself); the workers get none either (closed before the first fork, :func:`pre_fork`)
if (_PIPE := _supervisors_pipe()) is not None:
    with contextlib.suppress(OSError):  # a descriptor closed by now: nothing to hand on
        os.set_inheritable(_PIPE, False)


#: Hosts a client of a wildcard address may send: any, so none is warmed for
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
#: whether the app was warmed, before the first fork (:func:`_warm_app`)
_warmed = False


def _warm_app(server: Arbiter) -> None:
    """Once, before the first fork: what each worker of the preloaded app would make by itself on its first
    requests, made here and shared by every worker, a recycled one's successor too (``api.warm``: the app keeps it in
    its extensions, this module knowing nothing of Flask). Its links are made for the Hosts this gunicorn listens on
    by name (``127.0.0.1:5000``: what its clients send), with the scheme and root its requests come with."""
    global _warmed
    if _warmed or not server.cfg.preload_app:
        return
    warm = getattr(server.app.wsgi(), "extensions", {}).get("nectar_warm")
    _warmed = True
    if warm is None:  # a benchmark's hello world
        return
    hosts = []
    for address in server.cfg.address:
        if isinstance(address, tuple) and address[0] not in _WILDCARDS:  # not a unix socket's path, nor a descriptor
            host, port = address
            hosts.append(host_port(host, port))
    scheme = "https" if server.cfg.is_ssl else "http"
    try:
        warm(hosts, scheme, os.environ.get("SCRIPT_NAME", ""))  # gunicorn's root for every request
    except Exception:  # raised here it would stop gunicorn's master: each worker makes it on its first requests
        server.log.warning("could not warm the app before forking its workers", exc_info=True)


def post_worker_init(worker: Worker) -> None:
    """Each worker: its read deadline, its bound on a connection's requests, a request it cannot read answered in
    JSON as the app's errors are, and the service's answers sent head and body in one write."""
    from nectar.gunicorn_ext import json_error_pages, whole_answers

    worker.read_timeout = READ_TIMEOUT
    worker.keepalive_requests = KEEPALIVE_REQUESTS
    json_error_pages(worker)
    whole_answers(worker)


def worker_exit(server: Arbiter, worker: Worker) -> None:
    """A worker that ends leaves without Python's teardown (:func:`nectar.gunicorn_ext.exit_without_teardown`), its
    app's registry not closed. Safe for a SQLite one, as a worker killed (``kill -9``) is:

    - no turn at writing stays held: the turn is a POSIX lock of ``<file>-writer`` (``Writers``), SQLite's are POSIX
      locks too, and the kernel releases every lock of a process as it ends (``tests/nectar/test_sqlite_writers.py``:
      a process inside a write holds the turn until it dies, then another writes);
    - a write a thread was still making (past ``graceful_timeout``) never committed: its frames in the WAL have no
      commit frame, which SQLite's readers ignore and its next writer writes over;
    - the checkpoint a close makes of the turns the worker wrote since its last one is left to the other processes'
      checkpointers (:mod:`nectar.registry.sqlite_checkpoints`: past ``CHECKPOINT_FRAMES`` frames not yet copied,
      the next writer's copies them): those runs are committed, in the WAL; until that copy, a power loss may roll
      them back, as it may the runs of a worker alive since its last checkpoint (``synchronous = NORMAL``).
    """
    from nectar.gunicorn_ext import exit_without_teardown

    exit_without_teardown()


def when_ready(server: Arbiter) -> None:
    """A closed terminal (SIGHUP) stops the API as SIGTERM does; gunicorn would reload and live on.

    Set here, after gunicorn installed its own handlers; its workers watch this master and stop with it. A SIGHUP
    gunicorn queued before (it listens on its port before this hook) is taken as SIGTERM too. The app is
    loaded by now (``preload_app``): a module deferred while it was imported is imported for real by the next
    ``import`` of it (a chain file's, when the chains are loaded before each fork). Its listeners hand a connection
    to a worker once its request has begun to arrive (:func:`nectar.gunicorn_ext.defer_accept`).
    """
    from nectar.gunicorn_ext import defer_accept
    from nectar.lifeline import hangup_is_terminate

    defer_accept(server.LISTENERS)

    hangup_is_terminate()
    hangups_queued_as_terminate(server.SIG_QUEUE)
    _DEFERRAL.end()


def hangups_queued_as_terminate(queue: SimpleQueue[int]) -> None:
    """The signals gunicorn's handler queued, each SIGHUP (a reload) now a SIGTERM (a stop), the others as they were."""
    for signum in _drained(queue):
        queue.put_nowait(signal.SIGTERM if signum == signal.SIGHUP else signum)


def _drained(queue: SimpleQueue[int]) -> list[int]:
    """What ``queue`` held, taken out of it."""
    queued = []
    while True:
        try:
            queued.append(queue.get_nowait())
        except Empty:
            return queued


#: the signals gunicorn's master sends a worker to stop it (SIGTERM: gracefully; SIGQUIT, SIGINT: at once)
_WORKER_STOPS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)


def post_fork(server: Arbiter, worker: Worker) -> None:
    """A worker the master stops before the worker sets its own handlers (in ``init_process``, next) stops then,
    having served nothing. A stop sent between the fork and this hook went to the master's handler copied into
    this child, which queued it for a loop that never runs here: the master waited ``graceful_timeout`` (10 s) and
    killed the worker (a stop just after a start or a recycle). ``SystemExit`` ends the worker as gunicorn ends one."""
    for signum in _WORKER_STOPS:
        signal.signal(signum, _stop_unstarted_worker)
    if any(signum in _WORKER_STOPS for signum in _drained(server.SIG_QUEUE)):
        raise SystemExit(0)


def _stop_unstarted_worker(signum: int, frame: object) -> None:
    raise SystemExit(0)


def child_exit(server: Arbiter, worker: Worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Arbiter) -> None:
    if _METRICS_DIR:  # ours alone: the latencies of this gunicorn's workers
        from nectar.gunicorn_ext import remove_metrics_folder

        remove_metrics_folder(_METRICS_DIR)


def pre_exec(server: Arbiter) -> None:
    """In the process gunicorn forks on USR2 to execute a new master (its way to upgrade in place), before it does:
    refused, the process ended, where gunicorn was started by ``nectar serve`` or ``nectar api``. Their ``python -c``
    prelude is not in the command line gunicorn executes again (``sys.argv`` keeps ``-c`` and gunicorn's arguments,
    not the code): the new master ran ``-c`` as code and died (NameError), the old one serving on. Under ``serve`` a
    new master would also be a process the supervisor does not know, left running once the old one stops, and told
    to write its word on the registry to a descriptor it no longer has. Started as ``gunicorn -c
    configuration/gunicorn.conf.py``, gunicorn executes itself again as its documentation says."""
    if sys.argv[0] == "-c":
        from nectar.gunicorn_ext import USR2_REFUSED

        server.log.error(USR2_REFUSED)
        os._exit(1)
