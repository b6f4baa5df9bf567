"""The real processes of one test or benchmark, started, awaited until they answer, and stopped.

Each one (luigid, the API under gunicorn, a ``nectar`` command, moto's S3 server) runs in a session of
its own on free 127.0.0.1 ports, its output in a log file of its own, and carries this harness's token in
its environment (:data:`TOKEN_VAR`), as does everything it starts (a worker's attempts, the parts of
``nectar serve``). :meth:`Processes.close` kills every process carrying the token, whatever happened and
even if its parent is long gone: nothing is left behind. And when the process that started them dies without
closing (SIGKILLed: no finalizer runs), its lifeline (:mod:`harness.lifeline`) kills them all.
"""

from __future__ import annotations

import errno
import fcntl
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from harness.lifeline import close_on_exec, lifeline_env
from harness.procfs import alive, carrying, descendants, listens, send, stopped
from nectar.config import ENV_VARS, Settings, host_port, setting_text
from nectar.supervisor import LUIGID

#: luigi's own luigid, none of our patches (:data:`nectar.supervisor.LUIGID`): what a deployment running its own has
PLAIN_LUIGID = [sys.executable, "-c", "from luigi.cmdline import luigid; luigid()"]

REPO = Path(__file__).resolve().parent.parent
LUIGI_CFG = REPO / "configuration" / "luigi.cfg"
NECTAR = [sys.executable, "-m", "nectar.cli"]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "python:nectar.gunicorn_conf"]
APP = "app:create_app()"
#: every process a harness starts carries this variable, set to the harness's own token
TOKEN_VAR = "NECTAR_HARNESS_TOKEN"
#: what boto3 needs, beside ``AWS_ENDPOINT_URL``, to talk to moto (which takes any credentials)
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STOP_TIMEOUT = 15.0
#: starts of a part on a port, each on another free port where the last one's was taken between its pick and the
#: part's bind (:func:`on_a_free_port`)
BIND_TRIES = 5
#: what a part logs when its port is another process's: luigid (tornado), moto (werkzeug) and PostgreSQL the system's
#: words, gunicorn its own (it retries for ~5 s, then exits), ``nectar serve`` its refusals (a port taken before it
#: starts: :class:`nectar.ports.PortInUse`; another process answering on a part's port: ``wait_ready``)
IN_USE = ("Address already in use", "Connection in use", ") is in use by ", " answers from ")

T = TypeVar("T")


class PortTaken(RuntimeError):
    """A part could not have its port: another process listens there, or held it when the part bound."""


#: the ports :func:`free_port` handed out in this process, each handed out once
HANDED: set[int] = set()
#: picks :func:`free_port` makes before it says the ports it may hand out are spent
PICKS = 10_000
#: the file whose byte N a process handed port N holds a lock on (a POSIX record lock: the kernel drops it when the
#: process ends, however it ends), so no other process of this user is handed it while it lives: another xdist
#: worker, a subprocess of a test (it inherits its test's share, not its ``HANDED``), another session
PORT_LOCKS = Path(tempfile.gettempdir()) / f"nectar-free-ports-{os.getuid()}"
_port_locks: list[int] = []


def free_port() -> int:
    """A port nothing listens on now, never handed out before by this process nor by another process of this user
    that still lives (:data:`PORT_LOCKS`): under pytest-xdist another worker of the session, a subprocess of a test
    that picks ports of its own while its test does. The kernel picks a port for a ``bind`` to port 0 at random, so
    two picks may be the same port, in one process (a test that picked two ports for ``nectar serve`` was given one:
    its API's and luigid's) or in two; each xdist worker is also handed a share of the ports of its own
    (:func:`port_share`)."""
    share, shares = port_share()
    for _ in range(PICKS):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in HANDED and (port >> 1) % shares == share and _held_here(port):
            HANDED.add(port)
            return port
    raise RuntimeError(f"no free port this process has not handed out already, after {PICKS} picks")


def bound_to_a_free_port(bind: Callable[[tuple[str, int]], T], host: str = "127.0.0.1") -> T:
    """``bind((host, port))`` on a port :func:`free_port` hands out, and again on another each time that port was
    taken since its pick (``EADDRINUSE``), :data:`BIND_TRIES` in all: the one way a test has a socket or a server of
    its own on a port. Never a ``bind`` to port 0: the kernel may pick the port :func:`free_port` handed another
    process of this user (the other xdist worker), whose part binds it a moment later and cannot."""
    for _ in range(BIND_TRIES - 1):
        try:
            return bind((host, free_port()))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
    return bind((host, free_port()))


def _held_here(port: int) -> bool:
    """Whether this process now holds ``port``'s lock in :data:`PORT_LOCKS`: False while another process holds it;
    True where the file cannot be had (this process's own picks are still each handed out once)."""
    if not _port_locks:
        try:
            _port_locks.append(os.open(PORT_LOCKS, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError:
            return True
    try:
        fcntl.lockf(_port_locks[0], fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            return False
        return True
    return True


def port_share() -> tuple[int, int]:
    """This process's share of the ports and the number of shares: pytest-xdist's worker ``gwN`` the N-th of as many
    as its session has workers, any other process the one share. Ports are shared out by their bits above the lowest
    (the kernel picks odd ports for ``bind`` to port 0, even ones for outgoing connections)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(worker[2:]) < int(count):
        return int(worker[2:]), int(count)
    return 0, 1


def on_a_free_port(start: Callable[[int], T], port: int | None = None, tries: int = BIND_TRIES) -> T:
    """``start(port)`` (a free port if None) and, each time it raises :class:`PortTaken`, ``start`` again on another
    free port, ``tries`` in all. A port is free when it is picked, and bound by the part a moment later: meanwhile
    another process (another test's luigid, an outgoing connection's own end) may take it. Whoever calls this reads
    the port really used from what ``start`` returns."""
    for _ in range(tries - 1):
        try:
            return start(free_port() if port is None else port)
        except PortTaken:
            port = None
    return start(free_port() if port is None else port)


def exited_starting(failure: str, said: str) -> RuntimeError:
    """What to raise for a part that exited while starting (``failure``), having said ``said`` (its log's end):
    :class:`PortTaken` where it says its port was another's (:data:`IN_USE`), to be started on another."""
    failure = f"{failure}:\n{said}"
    return PortTaken(failure) if any(words in said for words in IN_USE) else RuntimeError(failure)


def on_free_ports(
    start: Callable[[int, int], T], port: int | None = None, other: int | None = None, tries: int = BIND_TRIES
) -> T:
    """``start(port, other)`` for a process that listens on two ports (``nectar serve``: the API's and luigid's), the
    rule of :func:`on_a_free_port`: free ones where None, and two other free ones each time ``start`` raises
    :class:`PortTaken`. Whoever calls this reads the ports really used from what ``start`` returns."""
    firsts = [other]

    def both(port: int) -> T:
        first = firsts.pop() if firsts else None
        return start(port, free_port() if first is None else first)

    return on_a_free_port(both, port, tries)


def wait_until(predicate: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.05) -> T:
    """``predicate()`` once it is true, polled every ``interval``; fails after ``timeout`` (a hung wait only)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def waitfor(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """:func:`wait_until`, failing with a message that says what was awaited."""
    try:
        return wait_until(predicate, timeout=timeout, interval=interval)
    except AssertionError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped (:func:`~harness.procfs.stopped`): from then on a signal sent
    to it stays pending (to be read in ``/proc``) and it does nothing, its children's deaths unseen. Sent SIGSTOP
    alone, a process that had no CPU since (a loaded machine) is still running when the next signal comes, and
    takes that one first."""
    send(pid, signal.SIGSTOP)
    waitfor(lambda: stopped(pid), 60, f"{pid} to stop (SIGSTOP)", interval=0.001)


def answers(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status ``url`` answers a GET with, or None while nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def base_env() -> dict[str, str]:
    """This process's environment without any Datanectar, AWS or luigi setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("NECTAR_", "AWS_", "LUIGI_"))}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a subprocess needs to share ``settings``, each value written as its variable's rule reads it
    (``nectar.config.setting_text``: a duration of ``1e-05`` as ``0.00001``, a count of ``3.0`` as ``3``)."""
    values = {var: getattr(settings, name) for var, name in ENV_VARS.items()}
    env = {var: setting_text(ENV_VARS[var], value) for var, value in values.items() if value is not None}
    env.setdefault("NECTAR_LUIGI_CONFIG", str(LUIGI_CFG))
    return env


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``proc`` alone, SIGKILL it after ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Served:
    """A part the harness started on a port (luigid, moto, an API, ``nectar serve``): its process and the port it
    answers on (``nectar serve``'s API's), and ``nectar serve``'s luigid's."""

    proc: subprocess.Popen[bytes]
    port: int
    scheduler_port: int | None = None


class Processes:
    """Every process one test or benchmark starts, each logged to ``<logs>/<name>-<n>.log``; see the module."""

    def __init__(self, logs: Path, token: str | None = None) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.token = token or uuid.uuid4().hex
        self.procs: list[subprocess.Popen[bytes]] = []
        #: pid -> the log file of what it printed
        self.log_of: dict[int, Path] = {}

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """``argv`` in a session of its own, ``env``, the token and this process's lifeline its whole environment
        (it dies with this process); does not wait."""
        path = self.logs / f"{name}-{len(self.procs)}.log"
        close_on_exec()
        with open(path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                env={**env, TOKEN_VAR: self.token, **lifeline_env()},
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # what this process holds is closed by the part's exec (close-on-exec, every file: close_on_exec()),
                # not before: until its exec gives it its lifeline, it holds the lifeline's write end (harness.lifeline)
                close_fds=False,
            )
        self.procs.append(proc)
        self.log_of[proc.pid] = path
        return proc

    def wait_up(
        self,
        proc: subprocess.Popen[bytes],
        url: str,
        what: str,
        status: int | None = None,
        timeout: float = 60.0,
        interval: float = 0.05,
    ) -> None:
        """Until ``url`` answers (with ``status``, if given) from ``proc`` or a descendant of it: the socket listening
        on the URL's port is theirs. Raises :class:`PortTaken` if another process listens there, or ``proc`` exits
        saying its port was in use; raises if ``proc`` exits first otherwise, showing its log."""
        port = urlsplit(url).port or 80

        def up() -> bool:
            if proc.poll() is not None:
                log = self.log_of.get(proc.pid)
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log else ""
                raise exited_starting(f"{what} exited with code {proc.returncode} while starting on {url}; {log}", tail)
            answer = answers(url)
            if answer is None:
                return False
            mine = listens(proc.pid, port)  # read once an answer came: no cost while nothing answers
            if mine is False:
                raise PortTaken(f"{url} answers from another process than the {what} started here (pid {proc.pid})")
            return bool(mine) and (status is None or answer == status)

        waitfor(up, timeout, f"{what} to answer on {url}", interval=interval)

    def serve(
        self,
        what: str,
        port: int | None,
        fixed: bool,
        launch: Callable[[int], subprocess.Popen[bytes]],
        ready: str,
        status: int | None = None,
    ) -> Served:
        """``launch(port)`` until it answers at ``ready`` from its own process; started again on another free port
        when its port was taken (:func:`on_a_free_port`), but for a ``fixed`` one (its clients know it), which raises
        :class:`PortTaken`."""

        def start(port: int) -> Served:
            proc = launch(port)
            try:
                self.wait_up(proc, f"http://127.0.0.1:{port}{ready}", what, status)
            except PortTaken:
                self.kill(proc)
                raise
            return Served(proc, port)

        return on_a_free_port(start, port, 1 if fixed else BIND_TRIES)

    # the parts

    def luigid(
        self,
        port: int | None,
        state: Path,
        config: Path = LUIGI_CFG,
        fixed: bool = False,
        plain: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Served:
        """luigid with ``config``, its state and logs in ``state``, on ``port`` (or a free one, see :meth:`serve`);
        answers before this returns. ``plain``: luigi's own (:data:`PLAIN_LUIGID`), not ours. ``env``: beside this
        process's (:func:`base_env`)."""
        state.mkdir(parents=True, exist_ok=True)
        env = {**base_env(), **dict(env or {}), "LUIGI_CONFIG_PATH": str(config)}

        def launch(port: int) -> subprocess.Popen[bytes]:
            argv = [
                *(PLAIN_LUIGID if plain else LUIGID),
                "--address",
                "127.0.0.1",
                "--port",
                str(port),
                "--state-path",
                str(state / "state.pickle"),
            ]
            return self.start("luigid", [*argv, "--logdir", str(state)], env, state)

        return self.serve("luigid", port, fixed, launch, "/api/worker_list")

    def api(
        self,
        port: int | None,
        env: Mapping[str, str],
        app: str = APP,
        workers: int = 2,
        threads: int | None = None,
        ready: str = "/healthz",
        status: int | None = None,
        fixed: bool = False,
    ) -> Served:
        """gunicorn with the service's configuration (nectar.gunicorn_conf) serving ``app`` on ``port`` (or a free
        one, see :meth:`serve`); answers at ``ready`` (with ``status``, if given) before this returns."""
        env = {**env, "NECTAR_HOST": "127.0.0.1", "NECTAR_API_WORKERS": str(workers)}
        if threads is not None:
            env["NECTAR_API_THREADS"] = str(threads)

        def launch(port: int) -> subprocess.Popen[bytes]:
            return self.start("api", [*GUNICORN, app], {**env, "NECTAR_PORT": str(port)}, REPO)

        return self.serve("the API", port, fixed, launch, ready, status)

    def nectar_api(
        self, settings: Settings, workers: int = 1, threads: int | None = None, env: Mapping[str, str] | None = None
    ) -> Served:
        """The API of ``settings`` under gunicorn on a free port, with a metrics folder of its own as deployed (and
        ``env`` beside the settings); answers before this returns."""
        inherited = {k: v for k, v in base_env().items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        return self.api(None, inherited | settings_env(settings) | dict(env or {}), workers=workers, threads=threads)

    def nectar_serve(
        self,
        env: Mapping[str, str],
        cwd: Path,
        args: Sequence[str] = (),
        ready: str = "/api/chains",
        port: int | None = None,
        scheduler_port: int | None = None,
        timeout: float = 60.0,
        host: str = "127.0.0.1",
    ) -> Served:
        """``nectar serve`` (with ``args``) on ``port`` and ``scheduler_port`` for luigid (free ones where None),
        until it answers 200 at ``ready`` from its own API on ``host`` (``args`` says where it listens); started
        again on two other free ports when one was taken (:func:`on_free_ports`): it refuses a taken port, or another
        server answers there. The ports really used are in what this returns."""

        def start(port: int, scheduler_port: int) -> Served:
            argv = [*NECTAR, "serve", "--port", str(port), "--scheduler-port", str(scheduler_port), *args]
            proc = self.start("serve", argv, env, cwd)
            try:
                self.wait_up(proc, f"http://{host_port(host, port)}{ready}", "nectar serve", 200, timeout)
            except PortTaken:
                self.kill(proc)
                raise
            return Served(proc, port, scheduler_port)

        return on_free_ports(start, port, scheduler_port)

    def worker(
        self, env: Mapping[str, str], cwd: Path | None = None, workers: int = 2, name: str = "worker"
    ) -> subprocess.Popen[bytes]:
        """``nectar worker`` executing ``workers`` runs at once; does not wait."""
        return self.start(name, [*NECTAR, "worker", "--workers", str(workers)], env, cwd)

    def moto(self, port: int | None = None, fixed: bool = False) -> Served:
        """moto's S3 server (it forgets everything when it stops) on ``port`` (or a free one, see :meth:`serve`);
        answers before this returns."""

        def launch(port: int) -> subprocess.Popen[bytes]:
            argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            return self.start("moto", argv, base_env(), self.logs)

        return self.serve("moto", port, fixed, launch, "/")

    # stopping

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process's group, SIGKILL it after ``timeout``; then SIGKILL whatever it started and left
        (``nectar serve`` starts its parts in sessions of their own, a worker its attempts in groups of their own)."""
        left = descendants(proc.pid)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        for pid in left:
            send(pid, signal.SIGKILL)

    def kill(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL the process's group (gunicorn's master and workers, say) and wait until all of it is gone;
        their pids."""
        group = [proc.pid, *descendants(proc.pid)]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        waitfor(lambda: not any(alive(pid) for pid in group), 60, f"{group} to die")
        return group

    def tagged(self) -> list[int]:
        """Every live process started here, or by what was started here."""
        return carrying(TOKEN_VAR, self.token)

    def close(self, grace: float = 0.0) -> None:
        """Stop everything: with a ``grace``, SIGTERM every process still running at once (their stops overlap, as
        ``nectar serve`` stops its parts) and give them that long to exit; then SIGCONT and SIGKILL every process
        carrying the token (frozen ones too) and each group started here."""
        running = [proc for proc in self.procs if proc.poll() is None]
        if grace > 0:
            for proc in reversed(running):
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for proc in reversed(running):
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        pids = set(self.tagged())
        for proc in running:
            pids.update(descendants(proc.pid))
        for pid in pids:
            send(pid, signal.SIGCONT)
            send(pid, signal.SIGKILL)
        for proc in running:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass

    def dump_logs(self, tail: int = 60) -> None:
        """Print the end of every log (a failed test's, say)."""
        for path in sorted(self.logs.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            print(f"----- {path.name} (last {tail} of {len(lines)} lines)")
            print("\n".join(lines[-tail:]))


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt (even where a shell started us ignoring SIGINT), so that
    every process is stopped on the way out."""

    def interrupt(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
