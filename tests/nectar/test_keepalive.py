"""Kept-alive connections: a client that waits the Retry-After it was told and reuses its connection finds it open
(gunicorn's keep-alive outlasts the service's Retry-After); a connection carries NECTAR_KEEPALIVE_REQUESTS requests
at most, so that clients all held by one worker spread to a worker started beside it (a recycled one's successor)."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import time

import pytest

from harness import GUNICORN, REPO, Processes, base_env, children, connected_to, free_port, lifeline_env, waitfor
from nectar.config import GunicornSettings, Settings
from nectar.errors import InvalidSetting
from nectar.gunicorn_ext import KEEPALIVE_REQUESTS
from nectar.ports import socket_inodes, tcp_sockets

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
def test_a_keepalive_bound_that_is_no_whole_number_is_refused_naming_it(value: str) -> None:
    """gunicorn's configuration reads the bound with the service's one parser of its variables
    (:class:`~nectar.config.GunicornSettings`, as :mod:`nectar.gunicorn_conf` is imported): each value refused in one
    line naming the variable; a start refused by it, end to end, below."""
    with pytest.raises(InvalidSetting) as refused:
        GunicornSettings({"NECTAR_KEEPALIVE_REQUESTS": value})
    assert str(refused.value) == f"NECTAR_KEEPALIVE_REQUESTS must be a whole number of at least 0, not '{value}'"


def test_a_keepalive_bound_that_is_no_whole_number_stops_the_start_naming_it() -> None:
    """gunicorn started with such a bound (one of the values above: the same parser refuses each) ends, saying why."""
    env = {**base_env(), "NECTAR_HOST": "127.0.0.1", "NECTAR_PORT": str(free_port())}
    env["NECTAR_KEEPALIVE_REQUESTS"] = "abc"
    env |= lifeline_env()  # gunicorn, had it started, dies with this process (harness/lifeline.py)
    refused = subprocess.run(
        [*GUNICORN, "app:create_app()"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "NECTAR_KEEPALIVE_REQUESTS must be a whole number of at least 0, not 'abc'" in refused.stderr, refused.stderr


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


def holders(workers: list[int], connections: list[socket.socket]) -> list[int | None]:
    """Which of ``workers`` has accepted each of the clients' ``connections`` (None: none yet, or it closed since),
    from one read of the kernel's TCP table: it lists every socket of the machine (thousands, beside a loaded
    suite), and a read of it for each connection and worker took longer than a connection is kept alive."""
    inodes = {pid: socket_inodes(pid) for pid in workers}
    peers: dict[int, set[str]] = {}  # a client's port -> the inodes of the sockets whose peer it is
    for fields in tcp_sockets():
        peers.setdefault(int(fields[2].rpartition(":")[2], 16), set()).add(fields[9])
    found = []
    for connection in connections:
        sockets = peers.get(connection.getsockname()[1], set())
        found.append(next((pid for pid in workers if sockets & inodes[pid]), None))
    return found


def test_a_worker_whose_threads_all_answer_takes_no_new_connection(settings: Settings, processes: Processes) -> None:
    """A worker whose every thread is answering a request leaves new connections to a worker with a free thread (a
    recycled worker's successor, idle while its sibling answers every client); accepted, they would wait behind it.

    One worker's only thread is held by a request whose headers never end (its read deadline far off); every
    connection opened after is accepted by the other worker (before: the held worker took some, often all 16)."""
    served = processes.nectar_api(settings, workers=2, threads=1, env={"NECTAR_READ_TIMEOUT": "600"})
    workers = waitfor(
        lambda: [*children(served.proc.pid)][:2] if len(children(served.proc.pid)) == 2 else None, 60, "two API workers"
    )
    held = socket.create_connection(("127.0.0.1", served.port), timeout=60)
    clients = [http.client.HTTPConnection("127.0.0.1", served.port, timeout=60) for _ in range(16)]
    try:
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: its thread reads on
        busy = waitfor(lambda: holders(workers, [held])[0], 60, "a worker to accept the held connection")
        for client in clients:
            client.request("GET", "/healthz")  # connects; the answer is read after
        accepted: dict[int, int] = {}  # a client's index -> the worker seen holding its connection

        def taken() -> list[int] | None:
            """Each connection's worker, once each was seen held: a connection answered is kept alive for gunicorn's
            ``keepalive`` seconds, then closed, and a look that comes later no longer finds it."""
            waiting = [n for n in range(len(clients)) if n not in accepted]
            for n, pid in zip(waiting, holders(workers, [clients[n].sock for n in waiting]), strict=True):
                if pid is not None:
                    accepted[n] = pid
            return [accepted[n] for n in range(len(clients))] if len(accepted) == len(clients) else None

        by = waitfor(taken, 60, "every connection to be accepted by a worker")
        assert busy not in by, f"worker {busy}, its only thread held, accepted {by.count(busy)} of {len(by)}"
        for client in clients:
            assert client.getresponse().status == 200
    finally:
        held.close()
        for client in clients:
            client.close()
