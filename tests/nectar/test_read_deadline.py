"""The read deadline of the API's gunicorn worker (nectar.gunicorn_ext.DeadlineUnreader) on a real socket pair: what
has arrived is read at once, without setting the socket's timeout; a read that must wait waits until the deadline.
And the worker keeps a connection whose request left nothing unread without draining it (a drain sets the timeout)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http.unreader import SocketUnreader

from nectar.gunicorn_ext import DeadlineConn, DeadlineUnreader, ReadTimeout, ReadTimeoutWorker

#: how long a test waits for what must happen: it only fails a hung test, it bounds nothing
PATIENCE = 60.0


class TimeoutsSet(socket.socket):
    """A socket that keeps the timeouts set on it (each is an ``ioctl``, and a ``poll`` before each ``recv``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeouts: list[float | None] = []

    def settimeout(self, value: float | None) -> None:
        self.timeouts.append(value)
        super().settimeout(value)


@pytest.fixture
def pair() -> Iterator[tuple[TimeoutsSet, socket.socket]]:
    served, client = socket.socketpair()
    server = TimeoutsSet(fileno=served.detach())
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def reader(server: socket.socket, read_timeout: float) -> DeadlineUnreader:
    cfg = Config()
    conn = DeadlineConn(read_timeout, Logger(cfg), cfg, server, ("127.0.0.1", 1), ("127.0.0.1", 2))
    server.setblocking(True)  # as gunicorn's thread makes it before reading a request
    conn.start_request()
    return DeadlineUnreader(conn, SocketUnreader(server))


def test_what_has_arrived_is_read_without_setting_a_timeout(pair: tuple[TimeoutsSet, socket.socket]) -> None:
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")

    assert reader(server, PATIENCE).chunk() == b"GET / HTTP/1.1\r\n\r\n"
    assert server.timeouts == []
    assert server.gettimeout() is None  # blocking, as gunicorn writes the answer


def test_a_read_that_must_wait_gets_what_arrives_before_the_deadline(pair: tuple[TimeoutsSet, socket.socket]) -> None:
    server, client = pair
    unreader = reader(server, PATIENCE)
    got: list[bytes] = []
    waiting = threading.Thread(target=lambda: got.append(unreader.chunk()))
    waiting.start()
    deadline = time.monotonic() + PATIENCE
    while not server.timeouts and time.monotonic() < deadline:  # the read waits with the time left as its timeout
        time.sleep(0.01)
    client.sendall(b"late")
    waiting.join(PATIENCE)

    assert got == [b"late"]
    assert len(server.timeouts) == 2 and 0 < (server.timeouts[0] or 0) <= PATIENCE and server.timeouts[1] is None
    assert server.gettimeout() is None


def test_a_read_past_the_deadline_with_nothing_arrived_times_out(pair: tuple[TimeoutsSet, socket.socket]) -> None:
    server, _ = pair
    unreader = reader(server, 0.001)
    unreader.conn.read_deadline = time.monotonic() - 1  # the deadline has passed

    with pytest.raises(ReadTimeout):
        unreader.chunk()
    assert server.gettimeout() is None


def test_a_request_with_nothing_left_unread_is_kept_without_a_drain(pair: tuple[TimeoutsSet, socket.socket]) -> None:
    """gunicorn drains a request's unread body before keeping its connection, setting the socket's timeout to do so
    and putting it back: a GET has no body, so its connection is kept with no timeout set; a body left unread is
    still drained (and the next request read after it)."""
    server, client = pair
    cfg = Config()
    worker = ReadTimeoutWorker(0, 0, [], None, PATIENCE, cfg, Logger(cfg))
    conn = DeadlineConn(PATIENCE, Logger(cfg), cfg, server, ("127.0.0.1", 1), ("127.0.0.1", 2))
    client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
    client.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.init()

    assert next(conn.parser).path == "/a"
    assert worker._keepalive_after(conn, True) is True
    assert server.timeouts == []
    assert next(conn.parser).path == "/b"  # its body is not read: the drain reads it, with the time left
    assert worker._keepalive_after(conn, True) is True
    assert [timeout for timeout in server.timeouts if timeout] and server.timeouts[-1] is None  # drained, blocking
    assert next(conn.parser).path == "/c"
    assert worker._keepalive_after(conn, False) is False
