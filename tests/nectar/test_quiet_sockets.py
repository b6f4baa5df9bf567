"""A kept-alive connection's requests set no socket mode in the API's worker (:class:`nectar.gunicorn_ext.QuietSocket`):
gunicorn set the socket blocking at each request and put its timeout back after looking for an unread body, two
``ioctl(FIONBIO)`` a request to set what was set. Counted by strace attached to the worker's threads; a change of mode
still changes it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from harness import Processes, children, lifeline_env, waitfor
from nectar.config import Settings
from nectar.gunicorn_ext import QuietSocket
from tests.harness.test_lifeline import strace

#: requests counted on the kept-alive connection
REQUESTS = 5


def get(connection: http.client.HTTPConnection) -> None:
    connection.request("GET", "/healthz")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200
    assert answer.getheader("Connection") == "keep-alive"


def test_a_kept_alive_connections_requests_set_no_socket_mode(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """Fails with gunicorn's own sockets: 2 ``ioctl(FIONBIO)`` a request."""
    served = processes.nectar_api(settings)
    worker = waitfor(lambda: next(iter(children(served.proc.pid)), None), 60, "the API's worker")
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    trace = tmp_path / "ioctl.trace"
    try:
        get(connection)  # the connection made and its first request answered before the count
        assert connection.sock is not None
        # each socket named by its addresses (-yy): only this connection's count (a graceful close of another, the
        # harness's probe of the API, sets a timeout to drain it)
        ours = f":{connection.sock.getsockname()[1]}]"
        argv = [strace(), "-f", "-yy", "-e", "trace=ioctl", "-o", str(trace), "-p", str(worker)]
        tracer = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=lifeline_env())
        try:
            assert tracer.stderr is not None
            line = tracer.stderr.readline()  # strace says it has attached to the worker's threads
            assert "attached" in line, line
            for _ in range(REQUESTS):
                get(connection)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.communicate(timeout=60)
    finally:
        connection.close()
    set_modes = [line for line in trace.read_text().splitlines() if "FIONBIO" in line and ours in line]
    assert set_modes == []


@pytest.mark.parametrize("first", [None, 0.0, 30.0])
def test_a_quiet_socket_changes_its_mode_when_asked_to(first: float | None) -> None:
    """Each change of mode takes, in Python's view and in the descriptor's (``O_NONBLOCK``): a timeout or none is
    non-blocking underneath, blocking only without one; a non-blocking read with nothing to read raises at once."""
    mine, theirs = socket.socketpair()
    quiet = QuietSocket.of(mine)
    with quiet, theirs:
        assert (quiet.gettimeout(), os.get_blocking(quiet.fileno())) == (None, True)
        quiet.settimeout(first)
        assert (quiet.gettimeout(), os.get_blocking(quiet.fileno())) == (first, first is None)
        for _ in range(2):
            quiet.setblocking(False)
            assert (quiet.gettimeout(), os.get_blocking(quiet.fileno())) == (0.0, False)
        with pytest.raises(BlockingIOError):
            quiet.recv(1)
        quiet.settimeout(30.0)
        assert (quiet.gettimeout(), os.get_blocking(quiet.fileno())) == (30.0, False)
        for _ in range(2):
            quiet.setblocking(True)
            assert (quiet.gettimeout(), os.get_blocking(quiet.fileno())) == (None, True)
        theirs.sendall(b"x")
        assert quiet.recv(1) == b"x"
