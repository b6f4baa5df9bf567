"""A private PostgreSQL server for the tests: Debian's package (installed if missing), a cluster on a free port."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from harness import PortTaken, lifeline_env, on_a_free_port
from tests.helpers.debian import install


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def ensure_installed() -> Path:
    """The folder of PostgreSQL's server programs, installing Debian's ``postgresql`` package if it is missing."""
    install("postgresql", lambda: _binaries() is not None)
    binaries = _binaries()
    assert binaries is not None  # install() checked it
    return binaries


#: each server's folder, in the temporary folder (or in a folder of a test's own: :meth:`PostgresServer.start`)
PREFIX = "nectar-pg-"
#: seconds ``pg_ctl start`` waits for the server to accept connections (its ``-t``: 60 by default, after which it
#: exits 1, "server did not start in time", and the server goes on starting): a crash recovery after :meth:`halt` on
#: a loaded machine may take longer; at 60 s a slow machine saw a bare CalledProcessError (exit status 1) and a server
#: left starting
START_WAIT = 300
#: what the server logs when its port is another process's (``EADDRINUSE``), and no other failure
IN_USE = "Address already in use"
#: the file in a server's folder that its test session holds locked while it lives (the kernel lets go when the
#: session dies, SIGKILL included): a server whose lock is free was left behind
OWNER = "owner.lock"


def stop_orphans(binaries: Path, parent: Path | None = None) -> list[Path]:
    """Stop and remove the servers in ``parent`` (the temporary folder) whose test session died without stopping
    them (a killed ``pytest``: ``pg_ctl`` starts a server in the background, no child of the session); the folders
    removed."""
    removed = []
    for folder in (Path(tempfile.gettempdir()) if parent is None else parent).glob(f"{PREFIX}*"):
        try:
            owner = os.open(folder / OWNER, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # none (being made, or an older helper's): not known to be left behind
            continue
        try:
            try:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its session lives
                continue
            stop = [str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]
            subprocess.run(_as_owner(stop), capture_output=True, timeout=60)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(owner)
    return removed


#: the template cluster's folder in the temporary folder (not :data:`PREFIX`'s: :func:`stop_orphans` never sees it)
TEMPLATE_PREFIX = "nectar-pgtemplate-"


def template(binaries: Path) -> Path:
    """The data folder of the machine's template cluster for ``binaries`` (made by ``initdb`` once, the first time a
    server is asked for: under a file lock, staged under another name and renamed once whole, so a session killed
    while making it leaves none that another session would copy), which :meth:`PostgresServer.start` copies for each
    server. ``initdb`` was ~1.2 s of CPU a server, its copy ~0.5 s. Named by the binaries' folder and ``initdb``'s
    modification time: a PostgreSQL upgraded or another major release gets a template of its own."""
    initdb = binaries / "initdb"
    key = hashlib.sha256(f"{binaries}:{initdb.stat().st_mtime_ns}:{os.geteuid()}".encode()).hexdigest()[:16]
    made = Path(tempfile.gettempdir()) / f"{TEMPLATE_PREFIX}{key}"
    if (made / "data" / "PG_VERSION").exists():
        return made / "data"
    lock = os.open(f"{made}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session making it: its template is this one's
        if not made.exists():
            for left in made.parent.glob(f"{made.name}-staged-*"):  # a killed session's, half made (the lock is ours)
                shutil.rmtree(left, ignore_errors=True)
            staged = Path(tempfile.mkdtemp(prefix=f"{TEMPLATE_PREFIX}{key}-staged-"))
            if os.geteuid() == 0:
                shutil.chown(staged, "postgres", "postgres")
            argv = [str(initdb), "-D", str(staged / "data"), "-A", "trust", "-U", "postgres", "--no-sync"]
            env = {**os.environ, **lifeline_env()}  # initdb dies with this process, even SIGKILLed
            subprocess.run(_as_owner(argv), env=env, check=True, capture_output=True, timeout=120)
            staged.rename(made)
    finally:
        os.close(lock)
    return made / "data"


def _owned(folder: Path) -> int:
    """A descriptor of ``folder``'s :data:`OWNER` file, locked: made under another name and renamed once locked,
    so that :func:`stop_orphans` never finds it free; closed on exec (a server started does not hold it)."""
    staged = folder / f"{OWNER}.new"
    owner = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    staged.rename(folder / OWNER)
    return owner


def _held(port: int) -> socket.socket | None:
    """A socket bound to 127.0.0.1:``port``, never listening, None if the port is another's: while it is bound, no
    other session's :func:`~harness.free_port` is given the port (``bind`` to port 0 skips a port bound without its
    ``SO_REUSEADDR``), yet the server binds and listens on it all the same (both ``SO_REUSEADDR``, this one not
    listening), and a connection to it is refused while the server is halted. Bound with ``SO_REUSEADDR`` itself: the
    connections a halt cut leave the port in ``FIN-WAIT-2``/``TIME-WAIT``, and a bind without it was refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    """One cluster in a temporary folder, listening on 127.0.0.1:``port``; trust authentication."""

    binaries: Path
    folder: Path
    port: int
    owner: int  # the locked descriptor of the folder's OWNER file, held while this session lives
    #: the port kept from every other session's pick while this server lives, halted too (:func:`_held`): a server
    #: halted (:meth:`halt`) must resume on it (its clients know it), and another session that picked it meanwhile
    #: made the resume fail
    held: socket.socket | None = field(default=None, repr=False)
    #: the databases of tests that ended, to drop once nothing is connected to them (:meth:`finished`)
    ended: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, port: int, parent: Path | None = None) -> PostgresServer:
        """A server in a new folder of ``parent`` (the temporary folder, where every session's is), once the servers
        left there by killed sessions are stopped (:func:`stop_orphans`). A test that leaves one there on purpose
        gives a folder of its own: another session starting a server at the same moment stopped and removed it
        under the test (which read its ``postmaster.pid``: not found). ``port`` is picked free before the copy, and
        bound by the server a few seconds later: a server that finds it taken by then (another session's, this
        failure alone) is started again on another (:func:`harness.on_a_free_port`), read from :attr:`port` after."""
        binaries = ensure_installed()
        stop_orphans(binaries, parent)
        folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        owner = _owned(folder)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        # a copy of the machine's template cluster (``cp -a``: the owner and modes kept), not an ``initdb`` a server
        subprocess.run(["cp", "-a", str(template(binaries)), str(folder / "data")], check=True, capture_output=True)
        server = cls(binaries, folder, port, owner)

        def bind(port: int) -> PostgresServer:
            server.port, server.held = port, _held(port)
            logged = server.logged()
            try:
                server.resume()
            except subprocess.CalledProcessError:
                if IN_USE not in server.logged()[len(logged) :]:
                    raise
                server._release()
                raise PortTaken(f"PostgreSQL's port {port} is another process's") from None
            return server

        return on_a_free_port(bind, port)

    def logged(self) -> str:
        """What the server wrote to its log so far ("" before its first start)."""
        try:
            return (self.folder / "log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _pg_ctl(self, *argv: str) -> list[str]:
        return _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.folder / "data"), *argv])

    def resume(self) -> None:
        """Start the server (again, after :meth:`halt`), and wait until it accepts connections: up to
        :data:`START_WAIT` seconds, a deadline that fails a server that hangs, not a slow one. A start that fails
        raises :class:`subprocess.CalledProcessError` with what ``pg_ctl`` said and the end of the server's log beside
        it (a note), where it said only its exit status."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400"
        start = self._pg_ctl("-l", str(self.folder / "log"), "-o", options, "-w", "-t", str(START_WAIT), "start")
        # the server dies with this process, even SIGKILLed (harness/lifeline.py); what is left, at the next start
        env = {**os.environ, **lifeline_env()}
        logged = self.logged()
        try:
            subprocess.run(start, env=env, check=True, capture_output=True, text=True, timeout=START_WAIT + 60)
        except subprocess.CalledProcessError as exc:
            tail = "\n".join(self.logged()[len(logged) :].splitlines()[-20:])
            exc.add_note(f"pg_ctl said: {(exc.stdout + exc.stderr).strip()}\nthe server's log:\n{tail}")
            raise

    def halt(self) -> None:
        """Stop the server as a crash would (immediate shutdown: every connection is cut)."""
        subprocess.run(self._pg_ctl("-m", "immediate", "stop"), check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A new, empty database; its URL. The databases of the tests that ended (:meth:`finished`) and that nothing
        is connected to any more are dropped first."""
        name = f"nectar_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            if self.ended:
                self._drop_unused(conn)
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def finished(self, url: str) -> None:
        """The test that was given the database of ``url`` has ended: it may be dropped (at the next
        :meth:`create_database`). A worker's session created one for each test that asked (~7.5 MB each, and its
        WAL): stopped at the session's end, its folder held gigabytes, and removing it was the last 17-35 s of
        each xdist worker of a full run (round 57), after every other worker had ended."""
        self.ended.append(url.rsplit("/", 1)[1])

    def _drop_unused(self, conn: psycopg.Connection[Any]) -> None:
        """Drop each database of :attr:`ended` that no session is connected to (one still is: a process of its
        test that has not closed its pool yet; it is tried again at the next creation, or goes with the folder)."""
        connected = {
            row[0] for row in conn.execute("SELECT DISTINCT datname FROM pg_stat_activity WHERE datname IS NOT NULL")
        }
        for name in [name for name in self.ended if name not in connected]:
            try:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
            except psycopg.errors.ObjectInUse:  # connected since the look: tried again later
                continue
            self.ended.remove(name)

    def stop(self) -> None:
        subprocess.run(self._pg_ctl("-m", "immediate", "stop"), capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self.owner)
        self._release()

    def _release(self) -> None:
        if self.held is not None:
            self.held.close()
            self.held = None
