"""review9 (round 55): the API's gunicorn worker (:class:`nectar.gunicorn_ext.ReadTimeoutWorker`) while every thread
is held inside the app: a request a kept-alive client sent meanwhile is answered once a thread is free, whatever
the keep-alive timeout says (the timeout is for idle connections; this one is not idle)."""

from __future__ import annotations

import http.client
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Processes, base_env, children, settings_env, waitfor
from nectar.config import Settings
from tests.helpers.review9_app import APP, APP_DIR, entered, hold, release

#: how long a test waits for what must happen: it only fails a hung test, it bounds nothing
PATIENCE = 60.0


class Api:
    def __init__(self, port: int, pid: int, folder: Path) -> None:
        self.port, self.pid, self.folder = port, pid, folder

    def worker(self) -> int:
        return int(waitfor(lambda: next(iter(children(self.pid)), None), PATIENCE, "the API's worker"))

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)

    def hold(self, name: str) -> http.client.HTTPConnection:
        """A connection whose ``GET /hold/<name>`` is inside the app (its answer not read)."""
        hold(self.folder, name)
        connection = self.connect()
        connection.request("GET", f"/hold/{name}")
        waitfor(lambda: entered(self.folder, name), PATIENCE, f"the request {name} inside the app")
        return connection


@pytest.fixture
def one_thread(settings: Settings, processes: Processes, tmp_path: Path) -> Iterator[Api]:
    """One worker of one thread; its keep-alive timeout 5 s (``NECTAR_RETRY_AFTER`` 0 + 5)."""
    folder = tmp_path / "held"
    folder.mkdir()
    environ = base_env() | settings_env(settings.replace(retry_after=0)) | {APP_DIR: str(folder)}
    served = processes.api(None, environ, app=APP, workers=1, threads=1)
    yield Api(served.port, served.proc.pid, folder)


def closed_by_the_server(connection: http.client.HTTPConnection) -> bool:
    """Waits until the server closes ``connection`` (idle: nothing to read but its end); whether it did."""
    assert connection.sock is not None
    connection.sock.settimeout(PATIENCE)
    try:
        return connection.sock.recv(1) == b""
    except TimeoutError:
        return False


@pytest.mark.parametrize("stopped", [False, True], ids=["serving", "stopped-meanwhile"])
def test_a_kept_alive_clients_request_sent_while_every_thread_is_held_is_answered_once_one_is_free(
    one_thread: Api, stopped: bool
) -> None:
    """``first`` then ``idle`` are answered and kept alive, in that order; a request then holds the worker's one
    thread, and ``first`` sends its next request. ``idle`` says nothing: the worker closes it at its keep-alive
    timeout, after ``first``'s came. ``first``'s request is then answered once the held one is let go: gthread's loop
    took it off its kept-alive connections as it arrived, and queued it for the next free thread. wt55-hop's 3f51a80
    (leader/followers) leaves it in the epoll, unseen by any thread, with its kept-alive timeout running: its main
    thread shuts the connection down at that timeout, and the request the client sent well within it is never
    answered (``RemoteDisconnected``; for a POST, one a client does not resend by itself). ``stopped``: the worker
    is stopped (SIGTERM, as a recycle after ``max_requests`` stops it) once the request was sent; the stop closes
    idle kept-alive connections after ``STOP_KEEPALIVE_LINGER`` (2 s), and gthread answered the request within
    ``graceful_timeout`` all the same (with ``Connection: close``); 3f51a80 cuts it with the idle ones."""
    first, idle = one_thread.connect(), one_thread.connect()
    held = None
    try:
        for connection in (first, idle):
            connection.request("GET", "/hello")
            assert connection.getresponse().read() == b"/hello"
        held = one_thread.hold("a")
        first.request("GET", "/again")  # well within its keep-alive timeout (5 s from its answer)
        if stopped:
            os.kill(one_thread.worker(), signal.SIGTERM)
        # the worker's keep-alive bookkeeping has passed first's timeout: idle, answered after it, is closed
        assert closed_by_the_server(idle), "the idle kept-alive connection was not closed at its timeout"
        release(one_thread.folder, "a")
        assert held.getresponse().read() == b"/hold/a"
        reply = first.getresponse()
        assert (reply.status, reply.read()) == (200, b"/again")
    finally:
        for opened in (first, idle, held):
            if opened is not None:
                opened.close()
