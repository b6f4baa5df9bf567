"""``nectar serve``: luigid, the workers (the schedules' clock in their process) and the API under gunicorn, started
and stopped together; and each of them alone, for a machine that plays one role: ``nectar scheduler``, ``nectar api``
(``nectar worker`` is the workers).

Under ``serve`` each part runs as its own process in its own session, so Ctrl-C (or SIGTERM, or
SIGHUP from a closed terminal) reaches only this supervisor, which then stops the API, the clock
and the workers at once (the workers let running tasks finish for ``NECTAR_DRAIN_GRACE`` seconds,
then interrupt and requeue them; a second Ctrl-C interrupts them at once) and luigid last. If any part dies,
everything is stopped and the command exits non-zero. If the supervisor itself dies, even by
``kill -9``, every part gets SIGTERM from the kernel and stops on its own (:mod:`nectar.lifeline`).

Before starting anything, ``serve`` (like ``api`` and ``scheduler``) checks that its ports are free
and refuses to start, naming the port and its holder, when one is not (the API's port it binds then, as ``api`` does,
and hands to gunicorn: no other program takes it before gunicorn starts); a part counts as up only
when it answers *and* the port it answers on is held by that part's own process. One luigid keeps its state in a
data folder: a second ``serve`` or ``scheduler`` on it is refused (:func:`hold_luigid_state`).

luigid runs behind its guard (:mod:`nectar.guard`): only our processes, which carry the scheduler
secret, change its state; browsers get its visualiser read-only.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from nectar import lifeline, ports, stops, wakeup
from nectar.config import DEFAULT_CHAINS, OPENED, REFUSED, REGISTRY_VERDICT_FD, Settings, host_port
from nectar.errors import NectarError, RegistryTooNew
from nectar.retry_count import check_luigid_settings, scheduler_retry_count

logger = logging.getLogger("nectar.supervisor")

#: flag -> (environment variable, default)
SERVE_FLAGS: dict[str, tuple[str, str | None, str]] = {
    "--host": ("NECTAR_HOST", "127.0.0.1", "address the API listens on"),
    "--port": ("NECTAR_PORT", "5000", "port of the API"),
    "--scheduler-host": ("NECTAR_SCHEDULER_HOST", "127.0.0.1", "address luigid listens on (keep it private)"),
    "--scheduler-port": ("NECTAR_SCHEDULER_PORT", "8082", "port of luigid and its visualiser"),
    "--scheduler-allowed-hosts": (
        "NECTAR_SCHEDULER_ALLOWED_HOSTS",
        "",
        "Host names browsers reach luigid's visualiser by, besides localhost (comma-separated)",
    ),
    "--scheduler-url": ("NECTAR_SCHEDULER_URL", None, "use this running luigid instead of starting one"),
    "--workers": ("NECTAR_WORKERS", "2", "runs executed at once"),
    "--api-workers": ("NECTAR_API_WORKERS", "2", "gunicorn worker processes, each with NECTAR_API_THREADS threads"),
    "--data-dir": ("NECTAR_DATA_DIR", "nectar_data", "run registry, live logs, luigid state"),
    "--chains-dir": ("NECTAR_CHAINS_DIR", DEFAULT_CHAINS, "folder of <type>/<name>_chain.py files"),
}
#: luigid's process: SIGHUP taken as SIGTERM, a SIGTERM before luigid's own handler an exit with status 0, then a
#: ``main`` called, imported with what luigi imports and
#: luigid never uses left unloaded (~9 MB, half of luigid's start: :data:`nectar.deferred_imports.LUIGID_UNUSED`;
#: tornado's curses, 0.2-0.6 MB: :data:`~nectar.deferred_imports.LUIGID_ABSENT`),
#: its RPC handler reading its CORS settings once, not per call (:func:`nectar.luigi_internals.luigid_reads_cors_once`),
#: its prune stepping over the tasks it would not change and forgetting the oldest finished beyond those it keeps
#: (:func:`nectar.luigi_internals.luigid_prunes_lean`),
#: its grants saying which step a late PENDING reopened (:func:`nectar.luigi_internals.luigid_marks_reopened`),
#: no failure counted of a cancelled run's step (:func:`nectar.luigi_internals.luigid_counts_no_cancel`, which checks
#: itself on the luigi loaded: one that counts failures where it cannot put them back fails luigid's start),
#: its state saved whole or not at all (:func:`nectar.luigi_internals.luigid_saves_whole`),
#: a worker it knows found without one made (:func:`nectar.luigi_internals.luigid_finds_workers_once`),
#: the RPCs workers POST answered straight from the scheduler (:mod:`nectar.luigid_server`),
#: its port taken as it binds the check's line, exit 2, or none under ``serve``, which names it (:func:`ports.binding`)
#: and its end, its state saved, without Python's teardown (:func:`nectar.exits.without_teardown`: ~0.08 s of CPU)
#: and no collection while it imports (each walked every object made so far: ~0.02 s, 6 % of its start), what they
#: made frozen before it serves (its collections walk its state's objects, not the modules'), as the API's master does
_LUIGID = (
    "import gc; gc.disable(); import nectar.lifeline as life; life.stops_exit_until_handled(); "
    "from nectar.deferred_imports import LUIGID_ABSENT, LUIGID_UNUSED, Deferral; "
    "deferral = Deferral(LUIGID_UNUSED, LUIGID_ABSENT); "
    "from nectar.luigi_internals import luigid_reads_cors_once as cors, luigid_prunes_lean as prune, "
    "luigid_marks_reopened as reopened, luigid_counts_no_cancel as uncounted, luigid_saves_whole as whole, "
    "luigid_finds_workers_once as workers; cors(); prune(); reopened(); uncounted(); whole(); workers(); "
    "from nectar.luigid_server import serve_rpcs_directly; serve_rpcs_directly(); "
    "from {} import {} as main; deferral.end(); gc.freeze(); gc.enable(); "
    "from nectar.ports import binding; from nectar.exits import without_teardown; "
    "without_teardown(lambda: binding(main, 'luigid, --scheduler-port'))"
)
#: luigid, started with this interpreter (its console script may not be on PATH): bare, as a test or a benchmark may
#: start it; ``serve`` and ``scheduler`` start :data:`GUARDED_LUIGID`
LUIGID = [sys.executable, "-c", _LUIGID.format("luigi.cmdline", "luigid")]
#: luigid behind its guard (:mod:`nectar.guard`), which takes luigid's arguments and its own
GUARDED_LUIGID = [sys.executable, "-c", _LUIGID.format("nectar.guard", "main")]
#: the API: gunicorn with the service's configuration serving the app, after the prelude luigid has (a stop before
#: gunicorn sets its handlers, while its master loads the app, ends it with status 0, not killed by the signal), on
#: the socket its starter bound and handed to it (:func:`nectar.ports.take_handed`: ``serve`` and ``api`` alike)
GUNICORN = [
    sys.executable,
    "-c",
    "import nectar.lifeline as life; life.stops_exit_until_handled(); "
    "from nectar.ports import take_handed; take_handed(); "
    "from gunicorn.app.wsgiapp import run; run(prog='gunicorn')",
    *("-c", "python:nectar.gunicorn_conf", "app:create_app()"),
]
#: where ``serve``'s defaults differ from a role's own: one API worker (8 threads) on a machine that runs everything
#: (a second doubles the status lookups a second on 2 free cores, and weighs ~50 MB idle: ``--api-workers 2``)
SERVE_DEFAULTS = {"--api-workers": "1"}
#: the flags of the commands that start one role
ROLE_FLAGS = {
    "api": ("--host", "--port", "--api-workers"),
    "scheduler": ("--scheduler-host", "--scheduler-port", "--scheduler-allowed-hosts", "--data-dir"),
}


def add_arguments(
    parser: argparse.ArgumentParser, flags: tuple[str, ...] | None = None, defaults: dict[str, str] | None = None
) -> None:
    for flag, (env, default, text) in SERVE_FLAGS.items():
        if flags is None or flag in flags:
            default = (defaults or {}).get(flag, default)
            help = f"{text} (env {env}, default {default})"
            # a blank variable is its default, as for the settings and gunicorn's (``NECTAR_API_WORKERS=`` in env files)
            parser.add_argument(flag, default=os.environ.get(env, "").strip() or default, help=help)


def luigid_state_file(data_dir: Path) -> Path:
    """The file luigid keeps its state in (task history across restarts), in ``<data_dir>/luigid``."""
    return data_dir / "luigid" / "state.pickle"


def luigid_command(host: str, port: str | int, data_dir: Path, allowed_hosts: str = "") -> list[str]:
    """luigid behind its guard on ``host:port``, its state (:func:`luigid_state_file`) and logs in
    ``<data_dir>/luigid``, the scheduler secret from ``data_dir`` unless set in the environment."""
    state = luigid_state_file(data_dir)
    state.parent.mkdir(parents=True, exist_ok=True)
    guard = ["--data-dir", str(data_dir), "--allowed-host", allowed_hosts]
    listen = ["--address", ports.bare_address(host), "--port", str(port)]  # tornado looks [::1] up as a name
    return [*GUARDED_LUIGID, *guard, *listen, "--state-path", str(state), "--logdir", str(state.parent)]


class StateInUse(NectarError):
    """Another luigid of ours (``nectar serve``'s, ``nectar scheduler``) keeps its state in this data folder."""


class NoStateFolder(NectarError):
    """luigid's state folder, ``<data dir>/luigid``, cannot be made (a read-only data folder, a file in its way)."""


def hold_luigid_state(data_dir: Path) -> int | None:
    """A descriptor holding ``<data_dir>/luigid`` for one luigid (a lock the kernel drops with the last process that
    holds it: handed to luigid, it lasts as long as luigid, which saves its state as it stops); raise
    :class:`StateInUse` where another holds it, :class:`NoStateFolder` where the folder cannot be made. Two luigids
    on one state file (two ``serve`` on one data folder, each on its own ports) each wrote the whole file as it
    stopped, the last over the first's tasks, or both at once into one file that the next start could not read
    ("Starting from empty state"). None where the folder takes no lock file, or its file system no lock: luigid
    starts there as before."""
    import fcntl  # only for a luigid of its own: a serve given --scheduler-url holds no state

    state = data_dir / "luigid"
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a traceback out of serve, exit 1; luigid, which would save its state there, not started
        raise NoStateFolder(
            f"luigid's state folder {state} cannot be made ({exc.strerror}): give --data-dir a folder this user may "
            "write to"
        ) from None
    try:
        fd = os.open(state / "state.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:  # a folder this user may not write to: luigid saves no state there either
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateInUse(
            f"the data folder {data_dir} is in use by another nectar serve or nectar scheduler (its luigid's state, "
            f"{state}): give each its own --data-dir"
        ) from None
    except OSError:  # a file system without locks (ENOLCK): not held, as before
        os.close(fd)
        return None
    return fd


def luigi_config(settings: Settings) -> Path | None:
    """The project's luigi.cfg, the settings' (``configuration/luigi.cfg`` here where ``NECTAR_LUIGI_CONFIG`` is
    unset, as every process reads it: :meth:`Settings.from_env`), if it exists."""
    path = settings.luigi_config
    return path if path is not None and path.is_file() else None


@dataclass
class Part:
    name: str
    proc: subprocess.Popen[bytes]
    #: seconds it may take to stop after SIGTERM before it is killed (``NECTAR_STOP_TIMEOUT``)
    stop_timeout: float = Settings.stop_timeout


def answers(url: str) -> bool:
    """Whether an HTTP server answers ``url`` at all (any status), within a second: its first line says HTTP/1.x.

    One GET over a plain socket: the supervisor imports neither requests, luigi nor http.client (which loads ssl and
    OpenSSL), so that it weighs what a bare Python process weighs."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    request = f"GET {where.path or '/'} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.sendall(request.encode("ascii"))
            first = conn.recv(4096)
            while conn.recv(65536):  # read to its end (it closes): closed early, the server would meet a reset
                pass
            return first.startswith(b"HTTP/1.")
    except OSError:
        return False


#: seconds a starting part may be silent before serve says (a WARNING, once) that it still waits for it
SLOW_START = 30.0


def wait_ready(
    url: str, part: Part, port: int, timeout: float | None = None, stopping: Callable[[], bool] = lambda: False
) -> bool:
    """Until ``url`` answers from ``part``'s own process (listening on ``port``), not from anyone else: True; False
    as soon as ``stopping()`` says a stop was asked meanwhile (a signal to ``serve`` while its parts start). As long
    as the part lives, unless ``timeout`` (seconds) is given: a part's start takes as long as the machine's load
    makes it (serve was up 17-18 s after it began at a load of 45 on 2 cores), and a bound of 30 s on each part
    ended ``serve`` on a loaded machine ("api did not answer ... within 30s", exit 1) while its API was starting."""
    began = time.monotonic()
    deadline = None if timeout is None else began + timeout
    slow = began + SLOW_START  # past it, a WARNING (once) says serve still waits: a start that hangs is seen
    while deadline is None or time.monotonic() < deadline:
        if stopping():
            return False
        if part.proc.poll() is not None:
            raise RuntimeError(f"{part.name} exited with code {part.proc.returncode} while starting")
        if not answers(url):
            if time.monotonic() >= slow:
                slow = math.inf
                logger.warning(
                    "%s (pid %d) has not answered on %s for %.0fs; still waiting while it lives (Ctrl-C stops serve)",
                    part.name,
                    part.proc.pid,
                    url,
                    time.monotonic() - began,
                )
            time.sleep(0.05)
            continue
        mine = ports.held_by(port, [part.proc.pid])  # one query to the kernel, once an answer came
        if mine:
            return not stopping()
        if mine is False:
            raise RuntimeError(
                f"port {port} answers from {ports.describe_holder(port)}, not from the {part.name} started here "
                f"(pid {part.proc.pid})"
            )
        time.sleep(0.05)
    raise RuntimeError(f"{part.name} did not answer on {url} within {timeout:.0f}s")


#: seconds the check of the registry's schema before ``serve`` is up may take (:func:`refuse_a_newer_registry`)
REGISTRY_CHECK_PATIENCE = 30.0


def refuse_a_newer_registry(
    settings: Settings,
    verdict: int | None = None,
    patience: float = REGISTRY_CHECK_PATIENCE,
    stopping: Callable[[], bool] = lambda: False,
    woken: int | None = None,
) -> None:
    """Raise :class:`~nectar.errors.RegistryTooNew` for a run registry a newer release upgraded, before Datanectar is
    announced up, not in the workers after it. Read from ``verdict`` (a pipe's end, closed here) where the API's
    gunicorn master opened the registry as it loaded the app (a SQLite one: its workers' schema checked once,
    there); else the registry is opened as the workers will (an older schema brought to this release's) in a process
    forked for it, after the API answers: its modules (~0.2 s of CPU, ~28 MB) are neither imported beside the API's
    start nor kept in the supervisor, which lives as long as the service. Opened once at the start either way (the
    master and the fork each opened a SQLite one: ~0.16 s of CPU more at each start). Any other error, or no answer
    within ``patience`` seconds (a database that does not answer), is left to the workers, which meet it as before.
    A stop asked meanwhile (``stopping()``, told by ``woken``: :func:`nectar.wakeup.signals`) ends the wait then."""
    if verdict is not None:
        said = _read_all(verdict, patience, stopping, woken)
        if said is not None and said.startswith(REFUSED):
            raise RegistryTooNew(said.removeprefix(REFUSED).decode())
        if said == OPENED or stopping():
            return
    reader, writer = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the check's own process: it only says why the registry is refused, then ends
        code = 0
        try:
            wakeup.no_signals()  # its signals are not the supervisor's stops
            lifeline.die_with_parent(parent, signal.SIGKILL)  # not left opening the registry for a supervisor gone
            os.close(reader)
            from nectar.registry import open_run_store

            open_run_store(settings).close()
        except RegistryTooNew as exc:
            os.write(writer, str(exc).encode())
        except BaseException:  # the workers' to meet
            code = 1
        finally:
            os._exit(code)
    os.close(writer)
    refusal = None
    try:
        refusal = _read_all(reader, patience, stopping, woken)
    finally:
        if refusal is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if refusal:
        raise RegistryTooNew(refusal.decode())


def _read_all(fd: int, patience: float, stopping: Callable[[], bool], woken: int | None) -> bytes | None:
    """What the pipe's end ``fd`` holds once every copy of its writing end is closed (``fd`` closed here), None if
    that did not come within ``patience`` seconds, or a stop was asked first (``stopping()``, ``woken`` readable when
    a signal came): a copy held on (by a process the master started as it loaded the app, say) delays the start that
    long, and no longer; a stop, not at all (it waited out the patience: 30 s)."""
    deadline = time.monotonic() + patience
    said = b""
    try:
        while not stopping():
            ready = wakeup.readable([fd] if woken is None else [fd, woken], deadline - time.monotonic())
            if not ready:
                return None
            if woken in ready:  # a signal: its handler ran before the poll returned; a stop, if it was one
                wakeup.drain(woken)
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return said
            said += chunk
        return None
    finally:
        os.close(fd)


class Supervisor:
    """Starts the parts in order and stops them in reverse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.parts: list[Part] = []
        self._stopping = False
        #: the pipe's end the API's master says how it opened the registry on (:meth:`launch`)
        self._registry_verdict: int | None = None
        #: readable when a signal came (:meth:`listen_for_stops`): a wait on a pipe ends at a stop, not after it
        self._woken: int | None = None
        #: the hold of luigid's state in the data folder (:meth:`check_ports`), handed to luigid (:meth:`launch`)
        self._state: int | None = None
        #: part -> the (host, port, what) it binds itself, as :meth:`check_ports` checked it (luigid)
        self._listens: dict[str, tuple[str, int, str]] = {}
        #: the API's socket, bound by :meth:`check_ports` until :meth:`launch` hands it to gunicorn
        self._api_listener: socket.socket | None = None
        #: the clock a part's stop deadline is on (:meth:`stop`)
        self.clock: Callable[[], float] = time.monotonic
        self.settings = Settings.from_env(
            chains_dir=args.chains_dir, data_dir=args.data_dir, scheduler_url=args.scheduler_url or None
        )
        luigi_cfg = luigi_config(self.settings)
        check_luigid_settings(luigi_cfg)  # refused in one line, before anything starts
        self.env = {
            **os.environ,
            "NECTAR_HOST": args.host,
            "NECTAR_PORT": str(args.port),
            "NECTAR_API_WORKERS": str(args.api_workers),
            "NECTAR_CHAINS_DIR": str(self.settings.chains_dir),
            "NECTAR_DATA_DIR": str(self.settings.data_dir),
            "NECTAR_LOCAL_TARGETS": str(self.settings.local_targets_dir),
            lifeline.SUPERVISOR_VAR: str(os.getpid()),
        }
        if luigi_cfg is not None:
            self.env["NECTAR_LUIGI_CONFIG"] = self.env["LUIGI_CONFIG_PATH"] = str(luigi_cfg)

    def _start(
        self,
        name: str,
        argv: list[str],
        stop_timeout: float | None = None,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> Part:
        """``argv`` started as the part ``name``, given ``stop_timeout`` seconds to stop (default: the settings'), with
        ``env`` beside :attr:`env` and the descriptors ``pass_fds``."""
        # its own session (Ctrl-C reaches the supervisor alone); SIGTERM from the kernel if the supervisor dies; a
        # stop held from its interpreter's start until its prelude takes it (stops_exit_until_handled: status 0)
        proc = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            start_new_session=True,
            preexec_fn=lifeline.part_of_this_process(),  # a stop held until its prelude handles it
            pass_fds=pass_fds,
        )
        part = Part(name, proc, self.settings.stop_timeout if stop_timeout is None else stop_timeout)
        self.parts.append(part)
        return part

    def check_ports(self) -> None:
        """Raise :class:`~nectar.ports.PortInUse` if a port this command must listen on is taken."""
        api = (self.args.host, int(self.args.port), "the API, --port")
        luigid = (self.args.scheduler_host, int(self.args.scheduler_port), "luigid, --scheduler-port")
        # bound here and handed to gunicorn (launch), as nectar api does: no other program takes it between the check
        # and gunicorn's start (gunicorn bound its own: a port taken meanwhile was told after the fact)
        self._api_listener = ports.listen(*api)
        if not self.settings.scheduler_url:
            ports.ensure_apart(api, luigid)
            ports.ensure_free(*luigid)
            self._listens["luigid"] = luigid
            self._state = hold_luigid_state(self.settings.data_dir)  # StateInUse: another luigid's data folder

    def launch(self) -> None:
        """The API, then luigid beside it (the API needs no luigid to answer): started, not awaited. The API first,
        as soon as this process can: its start (gunicorn's master loading the app) is the cold start's longest
        path, and whatever this process does next runs beside it."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        scheduler_url = self.settings.scheduler_url
        if not scheduler_url:
            scheduler_url = f"http://{host_port(self.args.scheduler_host, self.args.scheduler_port)}"
        self.env["NECTAR_SCHEDULER_URL"] = scheduler_url
        # the API's master tells through this pipe how it opened the registry (refuse_a_newer_registry); not on the
        # descriptor the API's socket is handed on (ports.take_handed)
        self._registry_verdict, writer = os.pipe()
        writer = ports.off_the_handed_descriptor(writer)
        assert self._api_listener is not None  # bound by check_ports
        listener, handed = ports.hand_over(self._api_listener)
        self._api_listener = None
        try:
            self._start("api", GUNICORN, env={REGISTRY_VERDICT_FD: str(writer), **handed}, pass_fds=(writer, listener))
        finally:
            os.close(writer)
            os.close(listener)  # gunicorn's now, alone
        if not self.settings.scheduler_url and not self._stopping:  # a stop asked meanwhile: nothing more starts
            args, data_dir = self.args, self.settings.data_dir
            argv = luigid_command(args.scheduler_host, args.scheduler_port, data_dir, args.scheduler_allowed_hosts)
            # luigid holds its state's folder too: a supervisor killed (-9), its luigid saving as it stops, keeps it
            self._start("luigid", argv, pass_fds=() if self._state is None else (self._state,))

    def start(self) -> None:
        """Once the API and luigid (:meth:`launch`) answer, the workers and the clock (a worker claims nothing before
        luigid answers; started beside the API, their imports took half of its CPU on 2 cores while it started): up
        when they are started, the API answering first. A stop asked meanwhile, or a part that died (:meth:`watch`
        says why), ends the wait: nothing more starts."""
        parts = {part.name: part for part in self.parts}
        api, luigid = parts["api"], parts.get("luigid")
        scheduler_url = self.env["NECTAR_SCHEDULER_URL"]
        host = "127.0.0.1" if self.args.host in ("0.0.0.0", "::") else self.args.host
        api_url = f"http://{host_port(host, self.args.port)}"
        if not self.ready(f"{api_url}/healthz", api, int(self.args.port)):
            return
        scheduler = f"{scheduler_url}/api/worker_list"
        if luigid is not None and not self.ready(scheduler, luigid, int(self.args.scheduler_port)):
            return
        self.check_registry()
        if self.stop_asked():
            return
        # workers drain: running tasks get drain_grace seconds, then are interrupted and requeued. The schedules'
        # clock runs in their process (its loops are threads; each fire is claimed in the registry, so any number
        # of clocks may run, on any machines): a process of its own weighed as much again (luigi, nectar, the chains)
        self._start(
            "workers",
            [sys.executable, "-m", "nectar.cli", "worker", "--clock", "--workers", str(self.args.workers)],
            stop_timeout=self.settings.drain_grace + self.settings.stop_timeout,
        )
        logger.info(
            "Datanectar is up: API %s/api/chains, docs /api/docs; luigi scheduler %s; chains from %s",
            *(api_url, scheduler_url, self.settings.chains_dir),
        )

    def ready(self, url: str, part: Part, port: int) -> bool:
        """:func:`wait_ready` of ``part`` on ``port``, ended by a stop or by another part's death (:meth:`watch` says
        why); where it failed for its port, :meth:`refuse_a_taken_port`."""
        try:
            up = wait_ready(url, part, port, stopping=lambda: self.stop_asked() or self.died(part) is not None)
        except RuntimeError:
            self.refuse_a_taken_port(part)
            raise
        if up:
            self._listens.pop(part.name, None)  # bound its port: its later death is not a port taken before its bind
        return up

    def died(self, besides: Part | None = None) -> Part | None:
        """A part that exited (but ``besides``), if any."""
        return next((part for part in self.parts if part is not besides and part.proc.poll() is not None), None)

    def refuse_a_taken_port(self, part: Part) -> None:
        """Raise the check's :class:`~nectar.ports.PortInUse` (one line naming the port, the part and its holder)
        where ``part``, not up yet, died, or another process answers on its port, and that port is taken now by
        another program than this serve's (a process whose environment does not name this supervisor): since the
        check (:meth:`check_ports`), before the part could bind it: luigid's (the API's is bound by the check itself
        and handed to gunicorn). The kernel says who holds the port, as for the check; the part's own complaint
        (luigid's line) is not read. A part's own process still holding it is no other program's."""
        listen = self._listens.get(part.name)
        if listen is None or (part.proc.poll() is None and ports.held_by(listen[1], [part.proc.pid]) is not False):
            return
        try:
            ports.ensure_free(*listen)
        except ports.PortInUse:
            ours = f"{lifeline.SUPERVISOR_VAR}={os.getpid()}"
            if not any(ports.environ_has(pid, ours) for pid in ports.listeners(listen[1])):
                raise

    def check_registry(self, patience: float = REGISTRY_CHECK_PATIENCE) -> None:
        """:func:`refuse_a_newer_registry` on the API's master's word, given up at a stop."""
        verdict, self._registry_verdict = self._registry_verdict, None  # closed there
        refuse_a_newer_registry(self.settings, verdict, patience, self.stop_asked, self._woken)

    def listen_for_stops(self) -> None:
        """SIGTERM, SIGINT and SIGHUP ask a stop (:meth:`request_stop`), and wake a wait on a pipe."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.request_stop)
        self._woken = wakeup.signals()

    def stop_asked(self) -> bool:
        return self._stopping

    def request_stop(self, *_: Any) -> None:
        """First signal: stop everything in order. Again: the workers interrupt their running runs now."""
        if self._stopping:
            for part in self.parts:
                if part.name == "workers" and part.proc.poll() is None:
                    part.proc.send_signal(signal.SIGTERM)  # a worker's second SIGTERM ends its drain
        self._stopping = True

    def watch(self) -> int:
        """Until a stop is asked (0) or a part dies (1: the stop begins then, and a Ctrl-C meanwhile is its second,
        which ends the workers' drain: the first did nothing while they drained for ``NECTAR_DRAIN_GRACE``; or
        :class:`~nectar.ports.PortInUse`, for a part that could not bind its port, taken since the check)."""
        exits = [wakeup.exits(part.proc.pid) for part in self.parts]
        try:
            while not self._stopping:
                part = self.died()
                if part is not None:
                    self._stopping = True
                    self.refuse_a_taken_port(part)  # PortInUse: the port it could not bind, taken since the check
                    logger.error("%s exited with code %s; stopping everything", part.name, part.proc.returncode)
                    return 1
                self._wait_for_change(exits)
            return 0
        finally:
            wakeup.close_all(*exits)

    def _wait_for_change(self, exits: list[int | None]) -> None:
        """Until a part exits or a signal comes: one ``poll()`` of each part's exit (``pidfd``) and of the signals'
        pipe, with no timeout, where the kernel tells both; else a look every 0.2 s. An idle ``serve`` woke 5 times
        a second to find its parts alive."""
        if self._woken is None or None in exits:
            time.sleep(0.2)
            return
        if self._woken in wakeup.readable([self._woken, *(fd for fd in exits if fd is not None)], None):
            if not self._stopping:  # a signal that asks no stop (none is handled so now): not woken by it again
                wakeup.drain(self._woken)

    def stop(self) -> None:
        """SIGTERM the API, the clock and the workers together (the API takes no more requests, the workers drain,
        the clock ends its pass: none waits on another), then luigid, which the draining workers still report to.
        One after the other, an idle ``serve`` took the sum of their stops (9-12 s on a busy machine). Each is
        killed at its own deadline: awaited in the order of their deadlines, the API (``NECTAR_STOP_TIMEOUT``) is
        not left running while the workers drain (``NECTAR_DRAIN_GRACE`` beyond it); luigid, never while it saves
        its state (:func:`nectar.stops.await_stop`)."""
        running = [part.name for part in reversed(self.parts) if part.proc.poll() is None]
        if running:
            # luigid last where it is one of them (none of serve's own under --scheduler-url)
            last = "; luigid last" if "luigid" in running and len(running) > 1 else ""
            logger.info("stopping %s%s", ", ".join(name for name in running if name != "luigid" or not last), last)
        first = [part for part in reversed(self.parts) if part.name != "luigid"]
        for parts in (first, [part for part in self.parts if part.name == "luigid"]):
            deadlines = {part.name: self.clock() + part.stop_timeout for part in parts}
            saving = {part.name: self.saving(part) for part in parts}  # before it is asked: saves begun since
            for part in parts:
                if part.proc.poll() is None:
                    part.proc.send_signal(signal.SIGTERM)
            for part in sorted(parts, key=lambda part: deadlines[part.name]):
                stops.await_stop(
                    part.name, part.proc, deadlines[part.name], part.stop_timeout, saving[part.name], self.clock
                )

    def saving(self, part: Part) -> Callable[[], stops.Save | None]:
        """How far ``part``'s save of its state has come as it stops (:func:`nectar.stops.luigid_saving`): luigid's,
        in the data folder; none for another part."""
        if part.name != "luigid":
            return lambda: None
        return stops.luigid_saving(luigid_state_file(self.settings.data_dir))


def serve(args: argparse.Namespace) -> int:
    supervisor = Supervisor(args)
    supervisor.check_ports()  # before anything starts: PortInUse names the port and its holder
    supervisor.listen_for_stops()
    try:
        supervisor.launch()
        # this process's own log, set up beside the API's start rather than before it (its modules' import is not
        # on the cold start's path); the parts inherit NECTAR_LOG_FORMAT and do the same
        from nectar.logs.format import configure_logging

        configure_logging(supervisor.settings.log_format)
        supervisor.start()
        code = supervisor.watch()
    except NectarError:  # the CLI's one line, exit 2 (RegistryTooNew is also a RuntimeError)
        raise
    except RuntimeError as exc:
        logger.error("%s", exc)
        code = 1
    finally:
        supervisor.stop()
    return code


def api(args: argparse.Namespace) -> int:
    """``nectar api``: this process becomes gunicorn serving the API (the registry, luigid and store come from
    the environment: ``NECTAR_DATABASE_URL``, ``NECTAR_SCHEDULER_URL``, ``ENV``/``PROJECT_BUCKET``...)."""
    settings = Settings.from_env()  # a bad setting is refused here, in one line naming it, not in gunicorn's traceback
    scheduler_retry_count(settings.luigi_config)  # so is luigi.cfg's [scheduler] retry_count
    # bound here, and handed to gunicorn, as serve hands it: no other program takes the port between the check and
    # gunicorn's bind (where gunicorn tried 5 times, a second apart, then exited 1 without naming the holder)
    _, handed = ports.hand_over(ports.listen(args.host, int(args.port), "the API, --port"))
    os.environ.update(handed)
    os.environ.update({"NECTAR_HOST": args.host, "NECTAR_PORT": str(args.port)})
    os.environ["NECTAR_API_WORKERS"] = str(args.api_workers)
    become(GUNICORN)


def scheduler(args: argparse.Namespace) -> int:
    """``nectar scheduler``: this process becomes luigid with the project's luigi.cfg (its ``[resources]`` are
    the pools every worker of every machine shares), its state in the data folder."""
    settings = Settings.from_env(data_dir=args.data_dir)  # a bad setting refused first, as by every command
    check_luigid_settings(luigi_config(settings))  # so are luigi.cfg's that luigid reads
    # checked before the exec; taken between this and luigid's bind, the same line from luigid (ports.binding)
    ports.ensure_free(args.scheduler_host, int(args.scheduler_port), "luigid, --scheduler-port")
    if (held := hold_luigid_state(settings.data_dir)) is not None:
        os.set_inheritable(held, True)  # luigid holds it from its exec on
    path = luigi_config(settings)
    if path is not None:
        os.environ["LUIGI_CONFIG_PATH"] = str(path)
    argv = luigid_command(args.scheduler_host, args.scheduler_port, settings.data_dir, args.scheduler_allowed_hosts)
    become(argv)


def become(argv: list[str]) -> NoReturn:
    """This process becomes ``argv`` (a part's command, whose prelude calls :func:`lifeline.stops_exit_until_handled`),
    a stop held pending from here until that prelude takes it: the new interpreter's start is not killed by it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, lifeline.STOPS)  # kept across exec, as a stop pending by then is
    os.execv(argv[0], argv)
