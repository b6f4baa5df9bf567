"""luigid's own side: each RPC a worker POSTs answered straight from the scheduler, as luigi's handler answers it.

luigi serves its scheduler's RPCs with a tornado ``RequestHandler`` (``luigi.server.RPCHandler``): per call, tornado
makes the handler (its default headers, a formatted ``Date``), runs it as a coroutine in a task of its own (the
connection's socket taken out of epoll and put back meanwhile), passes its answer through the application's
transforms and writes an access-log line (INFO, luigid's level: five lines a trivial run in ``luigi-server.log``).
Driven with a trivial run's five RPCs, a real luigid spent 330 µs (quiet machine) to 480 µs (loaded) of CPU per RPC,
of which luigi's scheduler about a tenth; answered here, 265 to 340 µs, and 12 system calls per RPC instead of 21.

:class:`LuigidRouter` answers an RPC POSTed as our processes and luigi's workers POST it (a form with one ``data``
field, no query, no ``Origin``) from the scheduler at once: the same status, body and headers, the application's
transforms applied (tornado's gzip of a long answer to a client that takes it, the guard's that drops ``Server``),
``data`` read as luigi's handler reads it. Everything else goes through luigi's own handler, as before: the
visualiser, CORS, a 404 for an unknown RPC, an RPC whose form tornado would read otherwise (a second field, bytes
that are no UTF-8, JSON that is no object), and one whose scheduler method raised (a 500, its traceback in luigid's
log). An RPC answered here is logged at DEBUG (its access line was at INFO); luigid's errors are logged as before.

A ``dep_graph`` asked with :data:`~nectar.luigid.DISABLED_ONLY` (an attempt's question, for a new submission: which
steps of its task did luigid disable?) is answered ``{}`` at once while the scheduler holds no DISABLED task, without
the prune of every task and worker luigi's ``dep_graph`` makes first (O(tasks + workers) per call: a luigid that
keeps each run's task and worker for minutes pruned ~1,000 of each per run, a third of its CPU per run at 70 runs/s);
else as luigi answers it (luigi's ``dep_graph`` takes the extra argument and ignores it, as luigi's own luigid does).
A prune may disable a step then (its worker gone, its last retry used): the attempt that meets it disabled asks
again (:func:`nectar.outcomes.wait`), and luigid, holding it, answers with the graph. Each ``get_work`` answered here
says whether the scheduler holds a DISABLED task (:data:`~nectar.luigi_internals.HOLDS_DISABLED`): a process whose
last grant said none does not ask the question for its next run (:func:`nectar.outcomes.re_enable_ahead`).

A batch (:data:`~nectar.luigid.BATCH_RPC`, :class:`BatchRPC`) is several RPCs in one request, each run as if POSTed
alone in turn and each answered: the calls a worker reads no answer of ride with its next, one request of luigid's
HTTP handling (about 0.9 ms of its CPU) for several.

A connection of ours may leave HTTP (:data:`~nectar.luigid.UPGRADE_RPC`): one ``GET`` that asks to switch to
:data:`~nectar.luigid.FRAMED` (``Upgrade``, as a WebSocket asks), which luigid's guard sees as any request (it passes
only with the scheduler secret; without, a 403 as for any RPC that is not a read), answered ``101``; from then on
each request on it is a frame (:class:`FramedRPC`): its length (4 bytes, big-endian), then a batch's body, answered
with a frame of the batch's answer, as :class:`BatchRPC` answers it, without tornado's HTTP handling per call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
import urllib.parse
from collections.abc import Awaitable
from typing import Any

import tornado
import tornado.http1connection
import tornado.httputil
import tornado.routing
import tornado.web
from tornado.log import access_log, app_log

from nectar.luigi_internals import (
    HOLDS_DISABLED,
    has_control_chars,
    holds_disabled,
    luigid_makes_once,
    luigid_rpc_handler,
    luigid_rpc_methods,
    read_past_request,
)
from nectar.luigid import BATCH_RPC, DISABLED_ONLY, FRAME_HEAD, FRAMED, JSON, UPGRADE_RPC

#: the form an RPC is POSTed as (by :mod:`nectar.luigid`, and luigi's ``RemoteScheduler``)
FORM = "application/x-www-form-urlencoded"
RPC_PREFIX = "/api/"
#: seconds a connection waits silent for its next request before luigid closes it: what tornado's ``HTTPServer``,
#: made by luigi without an ``idle_connection_timeout``, waits for an HTTP connection's next request (its
#: ``header_timeout``); an upgraded connection waits as long (:class:`FramedRPC`), unless set otherwise
#: (``NECTAR_SCHEDULER_IDLE_TIMEOUT``)
IDLE_TIMEOUT = 3600.0


class LuigidRouter(tornado.routing.Router):
    """luigid's tornado application, the RPCs workers POST answered by :class:`DirectRPC`."""

    def __init__(self, app: tornado.web.Application, scheduler: Any, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.app = app
        self.scheduler = scheduler
        #: seconds an upgraded connection may stay silent before luigid closes it (:class:`FramedRPC`)
        self.idle_timeout = idle_timeout
        self.methods = frozenset(name for name in luigid_rpc_methods() if hasattr(scheduler, name))
        luigid_makes_once(scheduler)

    def add_transform(self, transform: type[tornado.web.OutputTransform]) -> None:
        self.app.add_transform(transform)

    def get_handler_delegate(self, request: tornado.httputil.HTTPServerRequest, *args: Any, **kwargs: Any) -> Any:
        return self.app.get_handler_delegate(request, *args, **kwargs)

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        headers = request.headers
        method = request.path[len(RPC_PREFIX) :]
        if (
            request.method == "POST"
            and request.path.startswith(RPC_PREFIX)
            and not request.query
            and "Content-Encoding" not in headers
            and "Origin" not in headers
        ):
            if method in self.methods and headers.get("Content-Type") == FORM:
                return DirectRPC(self, request, method)
            if method == BATCH_RPC and headers.get("Content-Type") == JSON:
                return BatchRPC(self, request, method)
        if (
            request.method == "GET"
            and request.path == RPC_PREFIX + UPGRADE_RPC
            and headers.get("Upgrade", "").lower() == FRAMED
            and "upgrade" in headers.get("Connection", "").lower()
            and "Origin" not in headers
        ):
            return Upgrade(self, request, method)
        return self.app.find_handler(request, **kwargs)

    def run(self, method: str, arguments: dict[str, Any]) -> Any:
        """What the scheduler answers ``method`` called with ``arguments`` (raising what it raises); a ``get_work``'s
        answer says whether the scheduler holds a DISABLED task (:data:`~nectar.luigi_internals.HOLDS_DISABLED`)."""
        if method == "dep_graph" and arguments.get(DISABLED_ONLY) is True and not holds_disabled(self.scheduler):
            return {}
        answer = getattr(self.scheduler, method)(**arguments)
        if method == "get_work" and isinstance(answer, dict):
            answer[HOLDS_DISABLED] = holds_disabled(self.scheduler)
        return answer

    def answer_of(
        self, method: str, arguments: dict[str, Any], remote: str | None, framed: bool = False
    ) -> dict[str, Any]:
        """A call's answer in a batch: ``{"response": ...}``, else ``{"status": 404 or 500, "reason": ...}``, logged
        as luigi's handler logs it alone (a 404 at WARNING, a raise's traceback at ERROR), named by its transport: a
        batch's call as ``POST /api/<method> (<remote>) in a batch``, a frame's (``framed``) as ``FRAME <method>
        (<remote>)``. A method luigid has not is named percent-encoded, as tornado logs a request's URI: a client's
        text, whose line break would end the record and begin one of the client's making."""
        if method not in self.methods:
            access_log.warning("404 %s", _call_name(urllib.parse.quote(method), remote, framed))
            return {"status": 404, "reason": "Not Found"}
        try:
            return {"response": self.run(method, arguments)}
        except Exception as exc:  # as tornado logs an exception of luigi's handler
            call = _call_name(method, remote, framed)
            app_log.error("Uncaught exception %s", call, exc_info=exc)
            access_log.error("500 %s", call)
            return {"status": 500, "reason": "Internal Server Error"}


def _call_name(name: str, remote: str | None, framed: bool) -> str:
    """A call as luigid's log names it (made only when a line is logged: not for each answered call)."""
    return f"FRAME {name} ({remote})" if framed else f"POST {RPC_PREFIX}{name} ({remote}) in a batch"


class DirectRPC(tornado.httputil.HTTPMessageDelegate):
    """One RPC answered from the scheduler once its form is read; luigi's handler answers it if anything about it is
    out of the ordinary (then it gets the request as tornado read it)."""

    def __init__(self, router: LuigidRouter, request: tornado.httputil.HTTPServerRequest, method: str) -> None:
        self.router = router
        self.request = request
        self.method = method
        self.chunks: list[bytes] = []
        self.start_line: tornado.httputil.RequestStartLine | None = None

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        self.start_line = start_line
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        body = b"".join(self.chunks)
        arguments = rpc_arguments(body, self.request.headers)
        scheduler = self.router.scheduler
        if arguments is None:
            self.hand_over(body, luigid_rpc_handler(), {"scheduler": scheduler})
            return
        try:
            result = self.router.run(self.method, arguments)
        except Exception as exc:  # luigi's handler answers it: a 500, its traceback in luigid's log
            self.hand_over(body, Raised, {"scheduler": scheduler, "error": exc})
            return
        self.answer(tornado.escape.json_encode({"response": result}).encode("utf-8"))

    def answer(self, chunk: bytes) -> None:
        """Write a 200 with ``chunk`` (JSON) as tornado's ``RequestHandler`` writes it, through the application's
        transforms."""
        self.write_json(200, chunk)

    def write_json(self, status: int, chunk: bytes) -> None:
        """Write ``status`` with ``chunk`` (JSON) as tornado's ``RequestHandler`` writes it, through the application's
        transforms."""
        headers = tornado.httputil.HTTPHeaders(
            {
                "Server": f"TornadoServer/{tornado.version}",
                "Content-Type": "application/json; charset=UTF-8",
                "Date": tornado.httputil.format_timestamp(time.time()),
                "Content-Length": str(len(chunk)),
            }
        )
        for transform in self.router.app.transforms:
            status, headers, chunk = transform(self.request).transform_first_chunk(status, headers, chunk, True)
        connection = self.request.connection
        assert connection is not None
        start_line = tornado.httputil.ResponseStartLine("", status, tornado.httputil.responses[status])
        connection.write_headers(start_line, headers, chunk)
        connection.finish()
        level = logging.DEBUG if status < 400 else logging.WARNING  # as tornado's access log: a 4xx at WARNING
        if access_log.isEnabledFor(level):
            request = self.request
            took = 1000.0 * request.request_time()
            access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method, request.uri, request.remote_ip, took)

    def hand_over(self, body: bytes, handler: type[tornado.web.RequestHandler], kwargs: dict[str, Any]) -> None:
        """The request, as read, to ``handler`` through tornado's own machinery."""
        assert self.start_line is not None
        path_args = [self.method.encode("utf-8")]
        delegate = self.router.app.get_handler_delegate(self.request, handler, kwargs, path_args=path_args)
        delegate.headers_received(self.start_line, self.request.headers)
        if body:
            delegate.data_received(body)
        delegate.finish()

    def on_connection_close(self) -> None:
        self.chunks = []


class BatchRPC(DirectRPC):
    """A batch of RPCs (:data:`~nectar.luigid.BATCH_RPC`): each run on the scheduler in turn, as if POSTed alone one
    after the other, and each answered (``{"response": ...}``); a call that raises is answered ``{"status": 500,
    ...}`` and logged as luigi's handler logs it (its traceback, at ERROR), and the next run as after it; a method
    luigid does not serve is answered 404. A body that is no list of ``[method, {arguments}]`` is answered 400."""

    def finish(self) -> None:
        calls = batch_calls(b"".join(self.chunks))
        if calls is None:
            self.write_json(400, b'{"error": "a batch is a JSON list of [method, {arguments}]"}')
            return
        answers = [self.answer_of(method, arguments) for method, arguments in calls]
        self.write_json(200, tornado.escape.json_encode(answers).encode("utf-8"))

    def answer_of(self, method: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.router.answer_of(method, arguments, self.request.remote_ip)


class Upgrade(DirectRPC):
    """A connection of ours leaving HTTP for :data:`~nectar.luigid.FRAMED` (the guard let its request through): its
    socket taken from tornado to a :class:`FramedRPC` on the same loop, which answers ``101`` first."""

    def finish(self) -> None:
        connection = self.request.connection
        assert isinstance(connection, tornado.http1connection.HTTP1Connection)
        if self.chunks:  # an upgrade has no body
            self.write_json(400, b'{"error": "an upgrade has no body"}')
            return
        stream = connection.detach()
        stream.io_loop.remove_handler(stream.socket)
        sock, remote, limit = stream.socket, self.request.remote_ip, stream.max_buffer_size
        # what tornado read past the request (a client that sent its first frame without waiting for the 101): the
        # start of the frames
        read_past = read_past_request(stream)
        access_log.debug("101 GET %s (%s)", self.request.uri, remote)
        protocol = FramedRPC(self.router, remote, limit, read_past)
        switching = asyncio.get_running_loop().create_task(serve_framed(sock, protocol))
        _SWITCHING.add(switching)  # held until done: the loop keeps only a weak reference to a task
        switching.add_done_callback(_SWITCHING.discard)


#: the connections being handed to :class:`FramedRPC`
_SWITCHING: set[asyncio.Task[None]] = set()


async def serve_framed(sock: socket.socket, protocol: FramedRPC) -> None:
    """``sock``, taken from tornado (what it read past the upgrade's request given to ``protocol``: our client sends
    its first frame once it has the ``101``, another may not wait), served by ``protocol`` on this loop."""
    await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)


#: bytes a read of an upgraded connection takes at most, into a buffer of its own made once (a frame is ~0.5-1 kB)
READ_SIZE = 64 * 1024


class FramedRPC(asyncio.BufferedProtocol):
    """One upgraded connection: each frame a batch (``[[method, {arguments}], ...]``), answered with a frame of each
    call's answer as :class:`BatchRPC` answers it; a frame longer than ``limit`` (tornado's bound on a body) closes
    the connection unanswered, as tornado closes one whose body is over its bound. A connection that sends nothing
    for the router's ``idle_timeout`` while luigid owes it no answer is closed, as tornado closes an HTTP connection
    idle that long between two requests (its buffers freed; our client makes a new one for its next call). One whose
    answers stay past the transport's high-water mark that long (a client that sends frames and reads no answer) is
    aborted, its answers dropped: luigid no longer reads it, and would hold it and its answers for good; so is one
    silent that long whose answers, under the mark, wait to be read (a close would wait for them to be sent).

    Each read goes into its one buffer (``get_buffer``, :data:`READ_SIZE`): a plain protocol's transport reads with a
    ``recv`` of 256 kB, a new bytes object each time, above glibc's threshold for an allocation of its own until that
    threshold moves (it may not): in some luigid processes each frame then cost an ``mmap``, an ``mremap`` and a
    ``munmap`` (``strace -c``, 100 runs: 205 each, where others had none), and luigid's CPU a run read ~10-20 % more.
    """

    def __init__(self, router: LuigidRouter, remote: str | None, limit: int, read_past: bytes = b"") -> None:
        self.router, self.remote, self.limit = router, remote, limit
        self.loop = asyncio.get_running_loop()
        #: when the client last sent something (the loop's clock)
        self.heard = self.loop.time()
        #: the look for an idle connection: once per ``idle_timeout``, not moved per frame
        self.idle: asyncio.TimerHandle | None = None
        #: frames read, not yet answered (the first ``read_past``: read by tornado with the upgrade's request)
        self.buffer = bytearray(read_past)
        #: where each read goes (:meth:`get_buffer`), then appended to :attr:`buffer`
        self.read = memoryview(bytearray(READ_SIZE))
        self.transport: asyncio.Transport | None = None
        #: the transport's answers not yet sent are past its high-water mark: no frame is read or answered meanwhile
        self.paused = False
        #: since when (the loop's clock) they have been, while they are
        self.paused_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {FRAMED}\r\nConnection: Upgrade\r\n\r\n".encode()
        )
        self.idle = self.loop.call_later(self.router.idle_timeout, self._close_if_idle)
        self._answer()  # the frames read with the upgrade's request

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.read

    def buffer_updated(self, nbytes: int) -> None:
        self.heard = self.loop.time()
        self.buffer += self.read[:nbytes]
        self._answer()

    def _close_if_idle(self) -> None:
        """Close the connection if the client sent nothing for ``idle_timeout`` and is owed no answer luigid holds;
        abort it if the answers it holds waited past the high-water mark that long (paused: the client reads none
        of them; a close would wait to send them); else look again when it would be."""
        transport, timeout = self.transport, self.router.idle_timeout
        assert transport is not None
        if transport.is_closing():
            return
        if self.paused:
            unread = self.loop.time() - self.paused_at
            if unread < timeout:
                self.idle = self.loop.call_later(timeout - unread, self._close_if_idle)
                return
            access_log.debug("FRAME connection from %s read no answer for %.0f s: reset", self.remote, unread)
            self._reset(transport)
            return
        silent = self.loop.time() - self.heard
        if silent < timeout:
            self.idle = self.loop.call_later(max(timeout - silent, 0.0) or timeout, self._close_if_idle)
            return
        if transport.get_write_buffer_size():  # answers it has not read, under the mark: a close would wait for good
            access_log.debug("FRAME connection from %s idle for %.0f s, its answers unread: reset", self.remote, silent)
            self._reset(transport)
            return
        access_log.debug("FRAME connection from %s idle for %.0f s: closed", self.remote, silent)
        transport.close()

    @staticmethod
    def _reset(transport: asyncio.Transport) -> None:
        """End the connection at once, its answers not sent dropped: a reset (no linger), where a close's end would
        wait behind answers the client does not read (asyncio's transport ends only once they are sent)."""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def pause_writing(self) -> None:
        """Answers not yet sent past the transport's high-water mark (a client that sends frames and reads no
        answers): no frame more is read, nor answered, until they are sent; luigid buffers no more than that, and
        for no longer than ``idle_timeout`` (:meth:`_close_if_idle`)."""
        assert self.transport is not None
        self.paused, self.paused_at = True, self.loop.time()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.paused = False
        self.transport.resume_reading()
        self._answer()

    def _answer(self) -> None:
        """Answer the whole frames read, in turn, while the answers are sent as fast as they are made."""
        buffer, transport = self.buffer, self.transport
        assert transport is not None
        while not self.paused and len(buffer) >= FRAME_HEAD and not transport.is_closing():
            length = int.from_bytes(buffer[:FRAME_HEAD], "big")
            if length > self.limit:
                app_log.warning(
                    "a frame of %d bytes (over %d) from %s: connection closed", length, self.limit, self.remote
                )
                transport.abort()
                return
            if len(buffer) < FRAME_HEAD + length:
                return
            calls = batch_calls(bytes(buffer[FRAME_HEAD : FRAME_HEAD + length]))
            del buffer[: FRAME_HEAD + length]
            if calls is None:
                answer = b'{"status": 400, "reason": "a frame is a JSON list of [method, {arguments}]"}'
            else:
                entries = [self.router.answer_of(method, arguments, self.remote, True) for method, arguments in calls]
                answer = tornado.escape.json_encode(entries).encode("utf-8")
            transport.write(len(answer).to_bytes(FRAME_HEAD, "big") + answer)  # may pause writing (pause_writing)

    def connection_lost(self, exc: Exception | None) -> None:
        self.buffer.clear()
        if self.idle is not None:
            self.idle.cancel()


def batch_calls(body: bytes) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls of a batch's body, ``[[method, {arguments}], ...]``; None if it is not that."""
    try:
        calls = json.loads(body)
    except ValueError:
        return None
    if not isinstance(calls, list):
        return None
    read: list[tuple[str, dict[str, Any]]] = []
    for call in calls:
        if not (isinstance(call, list) and len(call) == 2 and isinstance(call[0], str) and isinstance(call[1], dict)):
            return None
        read.append((call[0], call[1]))
    return read


def rpc_arguments(body: bytes, headers: tornado.httputil.HTTPHeaders) -> dict[str, Any] | None:
    """The scheduler method's arguments, as luigi's handler reads them from a POSTed form (``get_argument("data",
    "{}")``, then ``json.loads``); None when tornado or luigi would read the form otherwise than as one JSON object
    in one ``data`` field, or fail to (luigi's handler then answers it)."""
    fields: dict[str, list[bytes]] = {}
    try:
        tornado.httputil.parse_body_arguments(FORM, body, fields, {}, headers)
    except tornado.httputil.HTTPInputError:
        return None
    values = fields.get("data")
    if values is None:
        payload = "{}"
    elif len(values) == 1:
        try:
            payload = values[0].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if payload != payload.strip() or has_control_chars(payload):
            return None
    else:
        return None
    try:
        arguments = json.loads(payload)
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None


class Raised(tornado.web.RequestHandler):
    """Answers an RPC whose scheduler method raised as luigi's handler answers one: the error raised in its ``get``."""

    def initialize(self, scheduler: Any, error: Exception) -> None:
        self.error = error

    def get(self, method: str) -> None:
        raise self.error

    post = get


def serve_rpcs_directly() -> None:
    """Every luigid this process serves from now on answers our RPCs through :class:`LuigidRouter`, its upgraded
    connections closed once idle for ``NECTAR_SCHEDULER_IDLE_TIMEOUT`` seconds (:data:`IDLE_TIMEOUT`)."""
    from nectar.config import Settings
    from nectar.luigi_internals import route_luigid_app

    idle_timeout = Settings.from_env().scheduler_idle_timeout
    route_luigid_app(lambda app, scheduler: LuigidRouter(app, scheduler, idle_timeout))
