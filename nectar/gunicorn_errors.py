"""gunicorn's own error answers (a bad request line, headers too large, ...) in the API's JSON error envelope.

A request gunicorn cannot parse never reaches the app: its worker answers with ``gunicorn.util.write_error``, an
HTML page. Every gunicorn worker calls it by that module attribute (``gunicorn/workers/base.py``: ``handle_error``),
so the hook :func:`json_error_pages` (``post_worker_init`` in :mod:`nectar.gunicorn_conf`) puts
:func:`write_json_error` in its place, in each worker process. gunicorn is pinned; the test that sends it a bad
request line (``tests/security/test_error_shape.py``) fails if a release answers some other way.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util


def json_error(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP answer: the envelope ``{"data": null, "message": ..., "status": ...}``, then the connection
    closes (gunicorn could not read the request, so it cannot read the next one either)."""
    body = json.dumps({"data": None, "message": f"{reason}: {message}" if message else reason, "status": status})
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body.encode())}\r\n\r\n"
    )
    return head.encode("latin-1") + body.encode()


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s replacement: the same answer, as JSON."""
    util.write_nonblock(sock, json_error(status_int, reason, mesg))


def json_error_pages(worker: object) -> None:
    """gunicorn's ``post_worker_init`` hook: this worker answers its own errors in JSON."""
    util.write_error = write_json_error
