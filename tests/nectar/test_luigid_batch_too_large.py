"""A batch of luigid calls refused as too large (413, a proxy's body limit): its calls go alone, batches go on."""

from __future__ import annotations

import json

import pytest

from nectar.luigid import BATCH_RPC, TOO_LARGE_RETRY, Connections
from tests.nectar.test_scheduler import Scripted, batch_of, ok

BATCH = f"/api/{BATCH_RPC}"
#: the proxy's limit on a request's body, in bytes (nginx's ``client_max_body_size``)
LIMIT = 400
TOO_LARGE = b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n"
TOO_LARGE_CLOSING = b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class Proxied(Scripted):
    """luigid behind a proxy that answers 413 to a body over :data:`LIMIT` bytes (``refusal``), the request not
    passed on; what it passes is run, each call once, in :attr:`run` (a batch's calls answered as our luigid does)."""

    def __init__(self, refusal: bytes) -> None:
        self.run: list[str] = []
        self.refusal = refusal
        #: its limit, which its operator may raise
        self.limit = LIMIT
        super().__init__(self._pass)

    def _pass(self, path: str, _: int) -> bytes:
        body = self.bodies[-1]
        if len(body) > self.limit:
            return self.refusal
        if path != BATCH:
            self.run.append(path)
            return ok(path)
        calls = json.loads(body)
        self.run += [f"/api/{method}" for method, _ in calls]
        return batch_of(*({"response": f"/api/{method}"} for method, _ in calls))


def form(size: int = 0) -> dict[str, str]:
    return {"data": json.dumps({"pad": "x" * size})}


@pytest.mark.parametrize("refusal", [TOO_LARGE, TOO_LARGE_CLOSING], ids=["413", "413-closing"])
def test_a_batch_refused_as_too_large_sends_its_calls_alone_once_each_and_batches_go_on(refusal: bytes) -> None:
    """A proxy before luigid refusing a batch's body as too large (413), not the batch RPC: that batch's calls go
    again one by one, each run once and answered, none lost; the client keeps batching, and a later batch under the
    limit goes as one request."""
    server = Proxied(refusal)
    try:
        connections = Connections(server.url, 10.0, batches=True)
        connections.send("/api/A", form(LIMIT // 2))
        connections.send("/api/B", form(LIMIT // 2))
        assert connections.post("/api/C", form()) == b'{"response": "/api/C"}'
        assert connections.batches
        connections.send("/api/D", form())
        assert connections.post("/api/E", form()) == b'{"response": "/api/E"}'
        assert server.seen == [BATCH, "/api/A", "/api/B", "/api/C", BATCH]
        assert server.run == ["/api/A", "/api/B", "/api/C", "/api/D", "/api/E"]
    finally:
        server.close()


def test_a_batch_as_large_as_one_refused_goes_alone_without_asking_again() -> None:
    """Once a batch of a size was refused as too large, a later batch as large goes call by call at once, with no
    second 413 first; a smaller one still goes as one batch."""
    server = Proxied(TOO_LARGE)
    try:
        connections = Connections(server.url, 10.0, batches=True)
        for calls in ("ABC", "DEF"):
            connections.send(f"/api/{calls[0]}", form(LIMIT // 2))
            connections.send(f"/api/{calls[1]}", form(LIMIT // 2))
            connections.post(f"/api/{calls[2]}", form())
        connections.send("/api/G", form())
        connections.post("/api/H", form())
        assert server.seen == [BATCH, *(f"/api/{name}" for name in "ABCDEF"), BATCH]
        assert server.run == [f"/api/{name}" for name in "ABCDEFGH"]
    finally:
        server.close()


def test_a_call_too_large_alone_is_that_calls_error() -> None:
    """A call over the limit on its own is refused as itself: the caller is told, and the calls before it in the
    batch were run once."""
    server = Proxied(TOO_LARGE)
    try:
        connections = Connections(server.url, 10.0, batches=True)
        connections.send("/api/A", form())
        with pytest.raises(Exception, match="413 Request Entity Too Large to /api/B"):
            connections.post("/api/B", form(LIMIT))
        assert server.run == ["/api/A"]
        assert connections.batches
    finally:
        server.close()


def large_batch(connections: Connections, names: str) -> None:
    """Two calls sent, then a third asked: one batch over :data:`LIMIT` bytes."""
    connections.send(f"/api/{names[0]}", form(LIMIT // 2))
    connections.send(f"/api/{names[1]}", form(LIMIT // 2))
    assert connections.post(f"/api/{names[2]}", form()) == f'{{"response": "/api/{names[2]}"}}'.encode()


@pytest.mark.parametrize("raised", [True, False], ids=["limit-raised", "limit-kept"])
def test_a_refused_batch_size_is_tried_whole_again_after_a_while_each_call_run_once(raised: bool) -> None:
    """The size refused is not remembered for the process's life: after :data:`TOO_LARGE_RETRY` batches as large
    went call by call, one goes whole again. A proxy's limit raised meanwhile is used from then on; one kept refuses
    it (not run) and its calls go alone, each run once, and the size is remembered again."""
    server = Proxied(TOO_LARGE)
    try:
        connections = Connections(server.url, 10.0, batches=True)
        large_batch(connections, "ABC")  # refused: its calls alone
        if raised:
            server.limit = 100 * LIMIT
        for _ in range(TOO_LARGE_RETRY):
            large_batch(connections, "DEF")
        assert server.seen.count(BATCH) == 1, "a batch as large as the refused one was sent whole too soon"
        large_batch(connections, "GHI")
        large_batch(connections, "JKL")
        calls = 1 + TOO_LARGE_RETRY + 2
        if raised:  # tried whole once more, passed: batches go whole again
            assert server.seen[-2:] == [BATCH, BATCH]
        else:  # tried whole once more, refused: alone again, and remembered
            assert server.seen[-7:] == [BATCH, "/api/G", "/api/H", "/api/I", "/api/J", "/api/K", "/api/L"]
        assert len(server.run) == 3 * calls, "a call was run twice, or not at all"
        assert server.run[-6:] == [f"/api/{name}" for name in "GHIJKL"]
    finally:
        server.close()


def test_each_call_of_a_batch_names_its_own_method_as_json_writes_it_batch_after_batch() -> None:
    """A batch names each call's method in JSON (a name JSON escapes too), the name of each call's own path, in the
    first batch and in the next ones (where the head of each entry was made before)."""
    server = Proxied(TOO_LARGE)
    server.limit = 1_000_000
    odd = '/api/say "é"\\'
    try:
        connections = Connections(server.url, 10.0, batches=True)
        for _ in range(2):
            connections.send(odd, form())
            connections.send("/api/B", form())
            assert connections.post("/api/C", form()) == b'{"response": "/api/C"}'
        assert server.seen == [BATCH, BATCH]
        assert server.run == [odd, "/api/B", "/api/C"] * 2
    finally:
        server.close()
