"""A chunked request body is read whole before its view, up to ``NECTAR_MAX_BODY`` bytes: one byte more is a 413.

A body sent without ``Content-Length`` (``Transfer-Encoding: chunked``) is read by werkzeug up to
``MAX_CONTENT_LENGTH`` and then ends there without a word, so a view would parse the first MiB of a 2 MiB body
and answer 422 about the JSON it cut. Read here, the body is refused as too large, like one whose
``Content-Length`` says so, or handed on as a body of known length.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from flask_smorest import abort

if TYPE_CHECKING:
    from api.guards import Asked


def chunked(request: Asked) -> bool:
    return "chunked" in request.environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def read_at_most(stream: io.BufferedIOBase, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``, however few each read returns."""
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_whole_chunked_body(request: Asked, limit: int | None) -> None:
    """A chunked body read whole (up to ``limit`` bytes, MAX_CONTENT_LENGTH) before the view; one byte more: 413."""
    if limit is None or not chunked(request):
        return
    environ = request.environ
    body = read_at_most(environ["wsgi.input"], limit + 1)
    if len(body) > limit:
        abort(413, message=f"Request Entity Too Large: the body is longer than {limit} bytes (NECTAR_MAX_BODY)")
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
