"""Through the real service (gunicorn): every error the API process answers is the JSON envelope, gunicorn's own
included, with no version banner (issue 17, point 10); a chunked body over the limit is 413, not 422 (point 11)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests.ui.conftest import site  # noqa: F401  (the real Datanectar under gunicorn, shared with the UI tests)

DEP = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"
MIB = 1 << 20
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def api(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("site").url)


def raw(api: str, sent: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client would send these); the status, headers and body of the answer."""
    where = urlsplit(api)
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(sent)
        chunks = []
        while chunk := sock.recv(65536):  # gunicorn closes the connection after its own error
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_envelope(status: int, headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (status, headers, body[:300])
    answer = json.loads(body)
    assert answer["data"] is None and answer["status"] == status and answer["message"], answer
    assert not re.search(r"\d", headers.get("server", "")), headers  # no version banner
    return answer


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # a request line that is not one
        (b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n", 400),  # an HTTP version that does not exist
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),  # beyond limit_request_line
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),  # a header too large
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", 431),  # too many headers
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Name: 1\r\n\r\n", 400),  # a header name with a space
    ],
    ids=["request-line", "http-version", "uri-too-long", "header-too-large", "too-many-headers", "header-name"],
)
def test_what_gunicorn_itself_refuses_is_the_json_envelope(api: str, sent: bytes, status: int) -> None:
    """These never reach the app: gunicorn's worker answered them with an HTML page."""
    got, headers, body = raw(api, sent)
    assert got == status, body[:300]
    assert_envelope(got, headers, body)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no/such/page", 404), ("PUT", "/api/chains", 405), ("GET", "/api/runs/nope", 404)],
)
def test_the_app_s_errors_are_the_envelope_without_a_banner(api: str, method: str, path: str, status: int) -> None:
    answer = requests.request(method, f"{api}{path}", timeout=60)
    assert answer.status_code == status
    assert_envelope(status, {k.lower(): v for k, v in answer.headers.items()}, answer.content)


def test_the_dns_rebinding_post_is_refused_by_the_real_service(api: str) -> None:
    headers = {"Host": "rebind.evil.example:5000", "Origin": "http://rebind.evil.example:5000"}
    answer = requests.post(f"{api}{DEP}?aparam=rebind", headers=headers, timeout=60)
    assert answer.status_code == 421
    assert_envelope(421, {k.lower(): v for k, v in answer.headers.items()}, answer.content)


def chunks_of(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body requests sends chunked (``Transfer-Encoding: chunked``, no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_beyond_the_limit_is_413(api: str) -> None:
    """2 MiB sent chunked was cut at 1 MiB without a word, and the cut JSON answered 422."""
    body = json.dumps({"aparam": "x" * (2 * MIB)}).encode()
    answer = requests.post(
        f"{api}{DEP}", data=chunks_of(body), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 413, answer.text[:300]
    assert (
        "NECTAR_MAX_BODY"
        in assert_envelope(413, {k.lower(): v for k, v in answer.headers.items()}, answer.content)["message"]
    )
    # a chunked body within the limit is read whole, as one with a Content-Length
    small = json.dumps({"aparam": "chunked"}).encode()
    answer = requests.post(
        f"{api}{DEP}", data=chunks_of(small, 5), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert answer.status_code == 202, answer.text[:300]
    assert answer.json()["data"]["run_id"]
