"""The API's listener hands a new connection to a worker once its client's request has begun to arrive
(``TCP_DEFER_ACCEPT``: :func:`nectar.gunicorn_ext.defer_accept`), not at the handshake: a client that connected and
sent nothing yet holds no worker's socket, and one that sent its request behind it is answered first."""

from __future__ import annotations

import http.client
import socket

from harness import Processes
from harness.procfs import connected_to, descendants
from nectar.config import Settings


def test_a_connection_reaches_a_worker_once_its_request_arrives(settings: Settings, processes: Processes) -> None:
    served = processes.nectar_api(settings)
    quiet = socket.create_connection(("127.0.0.1", served.port), timeout=60)  # connected, nothing sent yet
    talking = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        talking.request("GET", "/healthz")  # a connection made after the quiet one, its request sent
        answer = talking.getresponse()
        answer.read()
        assert answer.status == 200
        # accepted in the order of their handshakes, the quiet connection would be a worker's by now
        port = quiet.getsockname()[1]
        assert not any(connected_to(pid, port) for pid in [served.proc.pid, *descendants(served.proc.pid)])
        quiet.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        with quiet.makefile("rb") as reply:
            assert reply.readline().split()[1] == b"200"  # taken as soon as its request came
    finally:
        talking.close()
        quiet.close()
