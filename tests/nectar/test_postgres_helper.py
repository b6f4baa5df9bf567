"""The tests' PostgreSQL servers are not left behind by a test session that dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import REPO, free_port, wait_until
from tests.faults.conftest import alive
from tests.helpers.postgres import PostgresServer

#: a test session that starts a server and dies by SIGKILL: nothing of it can stop the server
KILLED_SESSION = (
    "import os, signal\n"
    "from tests.conftest import free_port\n"
    "from tests.helpers.postgres import PostgresServer\n"
    "server = PostgresServer.start(free_port())\n"
    "print(server.folder, flush=True)\n"
    "os.kill(os.getpid(), signal.SIGKILL)\n"
)


def test_a_server_left_by_a_killed_session_is_stopped_by_the_next_start_and_a_live_ones_is_kept(
    postgres: PostgresServer,
) -> None:
    """``pg_ctl`` runs the server in the background, no child of the session, so a killed ``pytest`` left it running
    (two were found on this machine after a helper stopped its suite). The next start stops and removes it; a
    server whose session lives (this one's) is kept."""
    done = subprocess.run([sys.executable, "-c", KILLED_SESSION], cwd=REPO, capture_output=True, text=True, check=False)
    orphan = Path(done.stdout.strip())
    postmaster = int((orphan / "data" / "postmaster.pid").read_text().split()[0])
    assert done.returncode == -9 and alive(postmaster), done.stderr

    server = PostgresServer.start(free_port())
    try:
        wait_until(lambda: not alive(postmaster), timeout=60)
        assert not orphan.exists()
        with psycopg.connect(postgres.url) as conn:  # the live session's server answers, as the new one does
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
