"""The API's answers as :mod:`nectar.gunicorn_ext` has gunicorn send them: an answer's headers and body in one write,
one TCP segment (gunicorn's own sent them in two, each one a wake-up of the client), through a real gunicorn."""

from __future__ import annotations

import json
import socket
import struct

from harness import Processes, base_env, settings_env
from nectar.config import Settings

#: where ``struct tcp_info`` (``linux/tcp.h``, Linux 4.6 and later) keeps ``tcpi_data_segs_in``: the segments with
#: data that the connection received
TCPI_DATA_SEGS_IN = 152


def answered(port: int, request: bytes) -> tuple[bytes, int]:
    """The whole answer to ``request`` (sent with ``Connection: close``: read until gunicorn closes) and in how many
    TCP segments with data it came."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    (segments,) = struct.unpack_from("I", info, TCPI_DATA_SEGS_IN)
    return data, segments


#: requests and what gunicorn answers them: an answer with a body, an error's (the app's JSON envelope), and one without
#: a body (``HEAD``: gunicorn finds no body byte to send, and the headers held for it go out alone, once)
ASKED = [("GET", "/healthz", 200), ("GET", "/api/nowhere", 404), ("HEAD", "/healthz", 200)]


def test_an_answer_comes_in_one_segment(settings: Settings, processes: Processes) -> None:
    port = processes.api(None, base_env() | settings_env(settings), workers=1).port

    for method, path, status in ASKED:
        request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        data, segments = answered(port, request)

        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), (method, path, data)
        if method == "HEAD":
            assert body == b""
        else:
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            assert len(body) == length and json.loads(body)["status"] == status
        assert segments == 1, (method, path, segments)
