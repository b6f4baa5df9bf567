"""The tests' PostgreSQL servers are not left behind by a test session that dies."""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness import bound_to_a_free_port
from tests.conftest import REPO, free_port, wait_until
from tests.faults.conftest import alive
from tests.helpers.postgres import PostgresServer, ensure_installed, stop_orphans

#: a test session that starts a server in the folder ``argv[1]`` and dies by SIGKILL: nothing of it can stop the server
#: (its lifeline neither, as where the lifeline's watcher was killed too: a server that carries it is killed by it at
#: some moment after the session's death, not known to the test)
KILLED_SESSION = (
    "import os, signal, sys\n"
    "from pathlib import Path\n"
    "from tests.conftest import free_port\n"
    "from tests.helpers import postgres\n"
    "from tests.helpers.postgres import PostgresServer\n"
    "postgres.lifeline_env = dict\n"
    "server = PostgresServer.start(free_port(), Path(sys.argv[1]))\n"
    "print(server.folder, flush=True)\n"
    "os.kill(os.getpid(), signal.SIGKILL)\n"
)


@pytest.fixture
def servers_folder() -> Iterator[Path]:
    """A folder of the test's own for its servers, out of every other session's sight (not the temporary folder's
    ``nectar-pg-*``), that PostgreSQL's user may enter; a server left there stopped at its end."""
    folder = Path(tempfile.mkdtemp(prefix="nectar-pg-test-servers-"))
    folder.chmod(0o755)
    yield folder
    stop_orphans(ensure_installed(), folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_server_left_by_a_killed_session_is_stopped_by_the_next_start_and_a_live_ones_is_kept(
    servers_folder: Path,
) -> None:
    """``pg_ctl`` runs the server in the background, no child of the session, so a killed ``pytest`` left it running
    (two were found on this machine after a helper stopped its suite). The next start in the same folder stops and
    removes it; a server whose session lives (this one's) is kept; a start elsewhere (another session's, in the
    temporary folder) leaves it alone."""
    live = PostgresServer.start(free_port(), servers_folder)
    try:
        argv = [sys.executable, "-c", KILLED_SESSION, str(servers_folder)]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        orphan = Path(done.stdout.strip())
        postmaster = int((orphan / "data" / "postmaster.pid").read_text().split()[0])
        assert done.returncode == -9 and alive(postmaster), done.stderr

        elsewhere = PostgresServer.start(free_port())  # another session's, at the same moment
        elsewhere.stop()
        assert alive(postmaster) and orphan.exists(), "a start in another folder stopped the orphan of this one"

        server = PostgresServer.start(free_port(), servers_folder)
        try:
            wait_until(lambda: not alive(postmaster), timeout=60)
            assert not orphan.exists()
            with psycopg.connect(live.url) as conn:  # the live session's server answers, as the new one does
                assert conn.execute("SELECT 1").fetchone() == (1,)
            with psycopg.connect(server.url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            server.stop()
    finally:
        live.stop()


def test_a_server_whose_port_was_taken_since_it_was_picked_starts_on_another(servers_folder: Path) -> None:
    """The port is picked free before ``initdb`` and bound at ``pg_ctl start``: another session may take it in
    between (here this test holds it, listening). The server starts on another port, and answers there."""
    with bound_to_a_free_port(socket.create_server) as taken:
        port = taken.getsockname()[1]
        server = PostgresServer.start(port, servers_folder)
        try:
            assert server.port != port
            with psycopg.connect(server.url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            server.stop()


def test_a_halted_servers_port_is_not_given_to_another_session_and_it_resumes_there(servers_folder: Path) -> None:
    """A server halted (its clients keep its URL) resumes on its port: while it is halted, another session's pick of
    a free port (``bind`` to port 0, as :func:`harness.free_port`: here a bind to the port itself, without
    ``SO_REUSEADDR``) cannot have it; a connection meanwhile is refused, as by a crashed server's. The port was free,
    another session's server could bind it, and the resume failed."""
    server = PostgresServer.start(free_port(), servers_folder)
    try:
        server.halt()
        with socket.socket() as other, pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", server.port))
        assert taken.value.errno == errno.EADDRINUSE
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(server.url, connect_timeout=60).close()
        server.resume()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_a_tests_database_is_dropped_at_the_next_creation_once_its_test_ended_and_nothing_is_connected(
    postgres: PostgresServer,
) -> None:
    """The session's server drops each test's database after it (a worker's session made hundreds, and removing its
    folder was the end of every worker's run); one its test's processes are still connected to is kept for later."""
    alone, held, later = postgres.create_database(), postgres.create_database(), postgres.create_database()
    with psycopg.connect(held) as holding:
        postgres.finished(alone)
        postgres.finished(held)
        postgres.create_database()
        with psycopg.connect(later) as conn:
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert not holding.closed
    assert alone.rsplit("/", 1)[1] not in names, names
    assert held.rsplit("/", 1)[1] in names, names
    postgres.finished(later)
