"""A status read sees every change of its run committed before its request began, whichever API thread, kept-alive
connection and registry connection answers it (round 55: a status read once stayed PENDING ~60 s after its run was
DONE). A real API (one gunicorn worker of 4 threads, its registry connections lent in turn) and a real ``nectar
worker``; the run's end is read from the registry file by the test itself before each request is sent."""

from __future__ import annotations

import functools
import http.client
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from harness import Processes, base_env, settings_env
from nectar.config import Settings
from tests.conftest import wait_until
from tests.helpers.threads import released_together

#: the API's threads, and as many kept-alive connections asking at once (each of its registry connections used)
THREADS = 4
STATUS = "/api/chainstatus?chain={key}"
HELLO = "/api/chains/testchains/hello_luigiworld_chain/TestS3Task"


class Client:
    """One kept-alive connection to the API, its answers' ``data`` as JSON."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def ask(self, method: str, path: str) -> dict[str, Any]:
        self.connection.request(method, path)
        answer = self.connection.getresponse()
        body = json.loads(answer.read())
        assert answer.status in (200, 202), body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
def clients(settings: Settings, processes: Processes) -> Iterator[list[Client]]:
    env = base_env() | settings_env(settings) | {"NECTAR_API_THREADS": str(THREADS)}
    port = processes.api(None, env, workers=1).port
    made = [Client(port) for _ in range(THREADS)]
    yield made
    for client in made:
        client.connection.close()


def at_once(clients: list[Client], ask: Callable[[Client], Any]) -> list[Any]:
    """``ask`` of every client, all sent together: several API threads answer at once, each over a registry
    connection of its own."""
    return released_together([functools.partial(ask, client) for client in clients])


def committed_state(registry: Path, run_id: str) -> str:
    """The run's state as committed, read by a connection of the test's own, opened for this one read."""
    with closing(sqlite3.connect(registry)) as db:
        (state,) = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(state)


def test_every_status_read_sent_after_the_run_ended_answers_it_ended(
    settings: Settings, clients: list[Client], processes: Processes, tmp_path: Path
) -> None:
    submitted = clients[0].ask("POST", HELLO)
    run_id, key = submitted["run_id"], submitted["key"]
    # every thread answers the PENDING run first, each over a registry connection it then gives back to be lent again
    before = at_once(clients, lambda client: client.ask("GET", STATUS.format(key=key))["job_status"])
    assert set(before) == {"PENDING"}
    processes.worker(base_env() | settings_env(settings), tmp_path, workers=1)
    wait_until(lambda: committed_state(settings.registry_path, run_id) == "DONE", timeout=60)
    statuses = at_once(clients, lambda client: client.ask("GET", STATUS.format(key=key))["job_status"])
    runs = at_once(clients, lambda client: client.ask("GET", f"/api/runs/{run_id}")["job_status"])
    assert (statuses, runs) == (["DONE"] * THREADS, ["DONE"] * THREADS)
