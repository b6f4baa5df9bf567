"""A client sending its request a byte at a time (slowloris) loses its connection after ``NECTAR_READ_TIMEOUT``
and frees its thread (issue 17, point 7): gunicorn with the service's configuration, one worker of one thread, so
the request of another client is answered only once the thread is free again."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from benchmarks.harness import Cluster, Processes, base_env
from harness import GUNICORN, lifeline_env
from tests.conftest import REPO, free_port, wait_until

READ_TIMEOUT = "1"
#: how long the test waits for what must happen: it only fails a hung test, it bounds nothing
PATIENCE = 60.0
SUBMIT = "/api/chains/bench/probe_chain/ProbeTask"


@dataclass
class Api:
    url: str
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.url.removeprefix("http://").partition(":")
        return host, int(port)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API under gunicorn, one worker with one thread, reading each request within READ_TIMEOUT seconds."""
    procs = Processes(tmp_path_factory.mktemp("slow") / "logs")
    try:
        world = Cluster(procs, procs.logs.parent / "world")
        yield Api(world.start_api(workers=1, threads=1, NECTAR_READ_TIMEOUT=READ_TIMEOUT), procs.logs / "api-0.log")
    finally:
        procs.close()


@dataclass
class SlowClient:
    """A connection that sends ``payload`` one byte at a time, for as long as the server keeps it open."""

    sock: socket.socket
    payload: bytes
    closed: threading.Event = field(default_factory=threading.Event)
    received: bytearray = field(default_factory=bytearray)
    sent: int = 0

    def trickle(self) -> None:
        for byte in self.payload:
            if self.closed.is_set():
                return
            try:
                self.sock.send(bytes([byte]))
            except OSError:  # the server closed it (a reset or a broken pipe)
                self.closed.set()
                return
            self.sent += 1
            time.sleep(0.05)

    def listen(self) -> None:
        """Until the server closes the connection: what it answers before that is kept."""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            self.received += chunk
        self.closed.set()

    def hang_up(self) -> None:
        """Stop trickling and listening (a test that failed must not wait for the payload's end)."""
        self.closed.set()
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


def _request_head(length: int, ended: bool = True) -> bytes:
    """The request line and headers of a submission with a body of ``length`` bytes (``ended``: and the blank line)."""
    head = (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    )
    return (head + "\r\n" if ended else head).encode()


#: what the slow client sends fast, then what it trickles (each far longer than the read timeout at 20 bytes a second)
PAYLOADS = {
    "headers": (b"", _request_head(8, ended=False) + b"X-Padding: " + b"a" * 4000 + b"\r\n\r\n" + b'{"n": 1}'),
    "body": (_request_head(4000), b'{"n": 1' + b" " * 3990 + b"}"),
}


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_request_sent_a_byte_at_a_time_is_cut_off_and_its_thread_freed(api: Api, part: str) -> None:
    fast, slow = PAYLOADS[part]
    client = SlowClient(socket.create_connection(api.address, timeout=PATIENCE), slow)
    with ThreadPoolExecutor(3) as pool, client.sock:
        try:
            client.sock.sendall(fast)
            pool.submit(client.listen)
            trickling = pool.submit(client.trickle)
            wait_until(lambda: client.sent > 0, timeout=PATIENCE)
            # another client, on another connection: the only thread is the slow client's until it is cut off
            other: Future[requests.Response] = pool.submit(requests.get, f"{api.url}/healthz", timeout=PATIENCE)

            assert client.closed.wait(PATIENCE), f"the connection trickling its {part} was never closed by the server"
            trickling.result(timeout=PATIENCE)
            assert other.result(timeout=PATIENCE).status_code == 200
        finally:
            client.hang_up()

    assert client.sent < len(slow), f"the slow client ran out of {part} before the server closed it"
    said = client.received.decode(errors="replace")
    assert not said.startswith("HTTP/1.1 202"), said  # nothing was submitted
    wait_until(lambda: f"did not arrive within {READ_TIMEOUT}s" in api.log.read_text(errors="replace"), PATIENCE)


def test_a_request_sent_at_once_is_served(api: Api) -> None:
    """The same request, not trickled: answered as before (the deadline counts from its first byte)."""
    with socket.create_connection(api.address, timeout=PATIENCE) as sock:
        sock.sendall(_request_head(8) + b'{"n": 1}')
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    assert answer.startswith((b"HTTP/1.1 202", b"HTTP/1.1 200")), answer


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_read_timeout_that_is_no_positive_number_stops_the_start_naming_it(tmp_path: Path, value: str) -> None:
    env = {**base_env(), "NECTAR_HOST": "127.0.0.1", "NECTAR_PORT": str(free_port()), "NECTAR_READ_TIMEOUT": value}
    env |= lifeline_env()  # gunicorn, had it started, dies with this process (harness/lifeline.py)
    refused = subprocess.run(
        [*GUNICORN, "app:create_app()"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    says = "NECTAR_READ_TIMEOUT must be a number of seconds > 0, at most 1000000000 (digits, at most one point), not "
    assert f"{says}'{value}'" in refused.stderr, refused.stderr
