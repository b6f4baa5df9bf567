"""The service's answers leave its gunicorn worker head and body in one write (:class:`nectar.gunicorn_ext.
WholeResponse`): gunicorn sent the head, then the body, two ``sendto`` and two TCP segments each answer.

Counted where the client sees them: the data segments its connection received (Linux's ``TCP_INFO``,
``tcpi_data_segs_in``). A write of a few hundred bytes on loopback with ``TCP_NODELAY`` (gunicorn's) is one segment,
so an answer written whole is one; gunicorn's two writes were two. What the answers say is gunicorn's, byte for byte,
each kind of answer gunicorn frames apart (a body of known length, a chunked one, HEAD, 204, a body past its
Content-Length) written by gunicorn's own response and by this one on message sockets (``SOCK_SEQPACKET``: each write
one message), and compared."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http.wsgi import Response

from harness import Processes, base_env, settings_env
from nectar.config import Settings
from nectar.gunicorn_ext import WholeResponse
from tests.helpers.module_api import module_api

#: where ``tcpi_data_segs_in`` sits in Linux's ``struct tcp_info`` (since 4.6)
DATA_SEGS_IN = 152
HELLO_APP = "benchmarks.baseline_app:create_app()"
DATE = re.compile(rb"Date: [^\r]*")
TASK = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="TCP_INFO is Linux's")


def data_segments(sock: socket.socket) -> int:
    """The data segments ``sock``'s connection has received so far."""
    return int(struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), DATA_SEGS_IN)[0])


class Client:
    """A kept-alive connection that reads each answer whole (by its Content-Length) and counts its segments."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buffer = b""

    def ask(self, method: str, path: str) -> tuple[bytes, bytes, int]:
        """The head and body of the answer to ``method path``, and the data segments they came in."""
        before = data_segments(self.sock)
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.received()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = 0 if method == "HEAD" else int(header(head, b"content-length"))
        while len(self.buffer) < length:
            self.buffer += self.received()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body, data_segments(self.sock) - before

    def received(self) -> bytes:
        got = self.sock.recv(65536)
        assert got, "the server closed the connection"
        return got


def header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        found, _, value = line.partition(b":")
        if found.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {head!r}")


@pytest.fixture(scope="module")
def api_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One API for the module's tests, which leave it as they found it (the one submission each makes is of the
    same run, answered 202 while it is queued, and nothing executes it)."""
    with module_api(tmp_path_factory.mktemp("whole")) as port:
        yield port


@pytest.fixture
def client(api_port: int) -> Iterator[Client]:
    """A connection of the test's own to the module's API."""
    client = Client(api_port)
    yield client
    client.sock.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", b"200"),  # Flask's answer
        ("POST", f"{TASK}?aparam=whole", b"202"),  # the submission's fast path
        ("GET", "/api/chainstatus?chain=testchains/hello_luigiworld_chain/TestS3Task/nope", b"400"),  # an error
        ("GET", "/api/nothing", b"404"),
    ],
)
def test_each_answer_of_the_service_arrives_in_one_segment(
    client: Client, method: str, path: str, status: bytes
) -> None:
    """Fails with gunicorn's own response: two segments each answer (the head, then the body)."""
    for _ in range(3):  # on one kept-alive connection
        head, body, segments = client.ask(method, path)
        assert head.split()[1] == status, head
        assert header(head, b"connection") == b"keep-alive"
        assert header(head, b"content-type") == b"application/json"
        assert body.startswith(b"{") and body.endswith(b"}\n")
        assert segments == 1, (head, body)
    head, body, segments = client.ask("HEAD", "/healthz")  # a head alone, its length the GET's
    assert (head.split()[1], body, segments) == (b"200", b"", 1)
    assert int(header(head, b"content-length")) > 0


def test_a_hello_world_beside_it_is_answered_as_gunicorn_answers(settings: Settings, processes: Processes) -> None:
    """The benchmarks' baseline, under the same configuration, keeps gunicorn's two writes (the service's are one:
    fails with gunicorn's own response there)."""
    hello = Client(processes.api(None, base_env() | settings_env(settings), app=HELLO_APP, workers=1).port)
    service = Client(processes.nectar_api(settings).port)
    try:
        assert [hello.ask("GET", "/hello")[2] for _ in range(2)] == [2, 2]
        assert [service.ask("GET", "/healthz")[2] for _ in range(2)] == [1, 1]
    finally:
        hello.sock.close()
        service.sock.close()


class Request:
    """What gunicorn's response reads of its request."""

    def __init__(self, method: str, version: tuple[int, int] = (1, 1)) -> None:
        self.method, self.version = method, version

    def should_close(self) -> bool:
        return False


def written(
    kind: type[Response], method: str, status: str, headers: list[tuple[str, str]], body: list[bytes]
) -> list[bytes]:
    """The messages ``kind`` writes for the answer (``status``, ``headers``, ``body``), as gunicorn's worker writes."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine, theirs:
        theirs.setblocking(False)
        response = kind(Request(method), mine, Config())
        response.start_response(status, headers)
        for piece in body:
            response.write(piece)
        response.close()
        messages = []
        while True:
            try:
                messages.append(DATE.sub(b"Date: -", theirs.recv(65536)))  # made each second
            except BlockingIOError:
                return messages


@pytest.mark.parametrize(
    ("method", "status", "headers", "body", "first"),
    [
        ("GET", "200 OK", [("Content-Length", "9")], [b'{"a": 1}\n'], 1),
        ("GET", "200 OK", [("Content-Length", "4")], [b"ab", b"cd"], 1),  # a known length in two pieces
        ("GET", "200 OK", [("Content-Length", "2")], [b"abcd"], 1),  # past its length: cut, as gunicorn cuts it
        ("GET", "200 OK", [], [b"ab", b"", b"cd"], 1),  # chunked: the first chunk with the head
        ("GET", "200 OK", [], [b"", b"ab"], 0),  # an empty first piece: the head alone, as gunicorn sends it
        ("HEAD", "200 OK", [("Content-Length", "9")], [b'{"a": 1}\n'], 0),
        ("GET", "204 NO CONTENT", [], [b""], 0),
        ("GET", "200 OK", [("Content-Length", "0")], [], 0),  # no body written: the head at the close
    ],
)
def test_an_answer_is_gunicorns_bytes_its_head_sent_with_its_first_piece(
    method: str, status: str, headers: list[tuple[str, str]], body: list[bytes], first: int
) -> None:
    """The same bytes as gunicorn's own response, in one write fewer wherever its first piece had bytes to send."""
    theirs = written(Response, method, status, headers, body)
    mine = written(WholeResponse, method, status, headers, body)
    assert b"".join(mine) == b"".join(theirs)
    head = theirs[0]
    assert head.endswith(b"\r\n\r\n")
    assert mine[0] == b"".join(theirs[: 1 + first])
    assert len(mine) == len(theirs) - first
