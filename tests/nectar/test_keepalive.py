"""Kept-alive connections: a client that waits the Retry-After it was told and reuses its connection finds it open
(gunicorn's keep-alive outlasts the service's Retry-After); a connection carries NECTAR_KEEPALIVE_REQUESTS requests
at most, so that clients all held by one worker spread to a worker started beside it (a recycled one's successor)."""

from __future__ import annotations

import http.client
import signal
import subprocess
import time

import pytest

from harness import GUNICORN, REPO, Processes, base_env, children, connected_to, free_port, waitfor
from nectar.config import Settings
from nectar.gunicorn_ext import KEEPALIVE_REQUESTS

#: a Retry-After longer than gunicorn's old keep-alive (5 s), so that the old setting fails this test
RETRY_AFTER = 6


@pytest.fixture
def api(settings: Settings, processes: Processes) -> int:
    return processes.nectar_api(settings.replace(retry_after=RETRY_AFTER)).port


def get(connection: http.client.HTTPConnection, path: str = "/healthz") -> http.client.HTTPResponse:
    """``GET path`` on ``connection`` (reopened by http.client if the last answer closed it), answered 200."""
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200
    return answer


def test_a_connection_idle_for_the_retry_after_is_still_open(api: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
    try:
        first = get(connection)
        assert first.getheader("Connection", "").lower() != "close"
        time.sleep(RETRY_AFTER)  # the client does exactly what a 503 told it: comes back after Retry-After seconds
        get(connection)  # on the same connection: http.client does not reconnect by itself
    finally:
        connection.close()


@pytest.mark.parametrize(("value", "bound"), [(None, KEEPALIVE_REQUESTS), ("3", 3), ("0", None)])
def test_a_connection_is_closed_with_the_answer_to_its_last_request(
    settings: Settings, processes: Processes, value: str | None, bound: int | None
) -> None:
    """The answer to a connection's ``NECTAR_KEEPALIVE_REQUESTS``-th request says ``Connection: close`` and the
    connection ends; the earlier ones keep it open (0: all of them). The client's next connection is answered."""
    env = {} if value is None else {"NECTAR_KEEPALIVE_REQUESTS": value}
    port = processes.nectar_api(settings, env=env).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for n in range(1, (bound or 2 * KEEPALIVE_REQUESTS) + 1):
            answer = get(connection)
            assert answer.will_close is (n == bound), f"request {n} of a connection bounded at {bound}"
            assert (answer.getheader("Connection", "").lower() == "close") is (n == bound)
        assert (connection.sock is None) is (bound is not None)  # http.client let go of the closed connection
        get(connection)  # a new connection
    finally:
        connection.close()


@pytest.mark.parametrize("value", ["abc", "-1", "2.5"])
def test_a_keepalive_bound_that_is_no_whole_number_stops_the_start_naming_it(value: str) -> None:
    env = {**base_env(), "NECTAR_HOST": "127.0.0.1", "NECTAR_PORT": str(free_port())}
    env["NECTAR_KEEPALIVE_REQUESTS"] = value
    refused = subprocess.run(
        [*GUNICORN, "app:create_app()"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert f"NECTAR_KEEPALIVE_REQUESTS must be a whole number of requests (0: no bound), not '{value}'" in (
        refused.stderr
    ), refused.stderr


def test_clients_all_held_by_one_worker_spread_to_a_worker_started_beside_it(
    settings: Settings, processes: Processes
) -> None:
    """Clients that keep their connections and were all accepted by one worker (the clients of a recycled worker
    reconnect before its successor is forked: all to its sibling) are answered by a worker started beside it too.

    Without the bound a connection lives on the worker that accepted it for as long as its client keeps it, and the
    second worker never answers one of them."""
    served = processes.nectar_api(settings, workers=1, env={"NECTAR_KEEPALIVE_REQUESTS": "4"})
    first = children(served.proc.pid)
    clients = [http.client.HTTPConnection("127.0.0.1", served.port, timeout=60) for _ in range(4)]
    try:
        for client in clients:
            get(client)  # open, on the one worker
        served.proc.send_signal(signal.SIGTTIN)  # one worker more, as gunicorn forks a recycled worker's successor
        second = waitfor(lambda: set(children(served.proc.pid)) - set(first), 60, "a second API worker").pop()

        def on_second() -> bool:
            for client in clients:
                get(client)
                if client.sock is not None and connected_to(second, client.sock.getsockname()[1]):
                    return True
            return False

        waitfor(on_second, 60, f"a client's connection on the second worker {second}", interval=0)
        assert len(children(served.proc.pid)) == 2
    finally:
        for client in clients:
            client.close()
