"""The tests' PostgreSQL servers are copies of one template cluster, not an ``initdb`` each (round 69, suiteA)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

from tests.conftest import free_port
from tests.helpers.postgres import PostgresServer, ensure_installed


def system_identifier(data: Path) -> str:
    """The cluster's "Database system identifier", which ``initdb`` draws anew for each cluster it makes."""
    said = subprocess.run(
        [str(ensure_installed() / "pg_controldata"), "-D", str(data)], check=True, capture_output=True, text=True
    ).stdout
    return next(line.split(":", 1)[1].strip() for line in said.splitlines() if "system identifier" in line)


def test_a_server_started_is_a_copy_of_the_sessions_cluster_and_answers_on_its_own(
    postgres: PostgresServer,
) -> None:
    """A server started after the session's has the session's cluster's system identifier (one ``initdb`` made both:
    a copy each), in a folder of its own, and answers with a database of its own; the session's server is read,
    never changed. Before, each server ran ``initdb`` (~1.2 s of CPU) and the two identifiers differed."""
    server = PostgresServer.start(free_port())
    try:
        assert server.folder != postgres.folder
        assert system_identifier(server.folder / "data") == system_identifier(postgres.folder / "data")
        with psycopg.connect(server.create_database()) as conn:
            assert conn.execute("SELECT current_database()").fetchone() != ("postgres",)
    finally:
        server.stop()
