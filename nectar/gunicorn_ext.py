"""What Datanectar adds to gunicorn: a deadline on reading each request, logs that neither leak nor forge, and
its own error answers in the API's JSON shape.

This is the one module that touches gunicorn's insides (its gthread worker's connection, its ``handle`` and the
stop it makes, its logger's atoms, the response class its ``wsgi.create`` makes); ``nectar.gunicorn_conf`` names the
two classes, and tests/security/test_slow_clients.py, tests/nectar/test_answering_threads.py,
tests/security/test_logs_and_metrics.py, tests/nectar/test_whole_answers.py and tests/nectar/test_quiet_sockets.py
fail if gunicorn changes under them (it is pinned to the minor version they passed on).

- :class:`ReadTimeoutWorker`: gunicorn's gthread worker reads a request's line, headers and body with a blocking
  socket and no timeout, so a client sending a byte at a time holds a thread for as long as it likes; here the
  whole request must arrive within ``read_timeout`` seconds of its first byte, or the connection is closed and
  the thread freed.
- :class:`ReadTimeoutWorker`'s threads wait for ready sockets themselves (leader/followers on one ``epoll``), so a
  request wakes one thread in the worker where gthread woke its loop, then a pool thread, then its loop again; it
  takes no new connection while all its threads answer one (another worker's free thread answers it), and closes a
  kept-alive connection with the answer to its ``keepalive_requests``-th request, so that clients all held by one
  worker (a recycled worker's, reconnected before its successor was forked) spread again.
- :class:`QuietSocket`: gunicorn sets a kept-alive connection's socket blocking at each request (``handle``) and puts
  its timeout back after looking for an unread body (``finish_body``): two ``ioctl`` a request, each letting go of
  the GIL, to set what was set. A client's socket here sets its mode only when it changes.
- :func:`defer_accept`: a listener wakes its workers for a new connection once the request's first bytes are there,
  not at the handshake (``TCP_DEFER_ACCEPT``): one wake-up of the API per new connection where there were two.
- :class:`RedactingLogger`: the access log writes ``[redacted]`` for the values of credentials in URLs (a token
  sent in the query string, a download URL's signature); in the text format every gunicorn record is escaped and
  kept on one line as the other processes' are (:class:`nectar.logs.format.TextFormatter`).
- :func:`make_metrics_folder`, :func:`remove_orphan_metrics`: each gunicorn keeps its workers' latencies in a folder
  of its own, locked while it lives, and removes it when it exits; one killed (SIGKILL) cannot, so the next one to
  start removes the folders whose lock is free.
- :func:`few_malloc_arenas`: glibc gives each thread that allocates an arena of its own, which keeps what the
  thread freed; a worker's 8 threads held ~1.5 MB each after a /metrics scrape, so they share two.
- :func:`exit_without_teardown`: a worker that ends (recycled by ``max_requests``, or stopped) has answered its
  connections by then; Python's teardown at exit then released every object the worker shares with its master,
  copying each page it touched (~35 ms of CPU and ~6,300 page faults per recycle, a third of what one cost), so
  it leaves at once with gunicorn's exit status, its logs flushed.
- :func:`whole_answers`: gunicorn sends an answer's head, then each piece of its body, each in a write of its own
  (``Response.send_headers``, then ``write``): two ``sendto`` a JSON answer. The service's workers send the head with
  the body's first piece (:class:`WholeResponse`): one write, one wake-up of the client, where the body is one piece.
- :func:`json_error_pages`: a request gunicorn cannot parse (a bad request line, headers too large, ...) never
  reaches the app; its worker answers with ``gunicorn.util.write_error``, an HTML page, called by that module
  attribute (``gunicorn/workers/base.py``: ``handle_error``); here it answers in the API's JSON envelope
  (tests/security/test_error_shape.py fails if a release answers some other way).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import select
import selectors
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from typing import Any
from urllib.parse import unquote_plus

import gunicorn.http.message
import gunicorn.http.wsgi
from gunicorn import glogging, util
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http.wsgi import Response
from gunicorn.workers.gthread import _DEFER, STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from nectar import config
from nectar.logs.format import TextFormatter, configure_logging

#: seconds a request's line, headers and body may take to arrive, unless the configuration says otherwise
READ_TIMEOUT = config.READ_TIMEOUT
#: seconds the kernel holds a new connection whose client has sent nothing before a worker is woken to accept it
#: (``TCP_DEFER_ACCEPT``; Linux rounds it up to a retransmission of its SYN-ACK, then accepts it all the same, and the
#: read deadline counts from there)
DEFER_ACCEPT = 1
#: requests a kept-alive connection carries, unless the configuration says otherwise: the answer to the last one closes
#: it, and the client's next connection goes to whichever worker accepts it first (an idle one, as a rule). A new
#: connection costs the API ~100 us of CPU (5 us a request at 20, under 1 % of a status lookup); at the status
#: benchmark's ~100 requests/s a connection, a recycled worker's successor gets its share within ~0.2 s
KEEPALIVE_REQUESTS = config.GUNICORN_WHOLES["NECTAR_KEEPALIVE_REQUESTS"][0]
#: what the master says of a USR2 it refuses (:func:`nectar.gunicorn_conf.pre_exec`): here, as importing that file sets
#: ``PROMETHEUS_MULTIPROC_DIR`` in the importing process
USR2_REFUSED = (
    "USR2 refused: a gunicorn started by nectar serve or nectar api cannot start a new master of itself; this one "
    "goes on serving. Restart it to run new code (README, Deploying)"
)
#: query parameters whose values never reach a log
SECRET_PARAMS = frozenset({"token", "access_token", "signature"})
REDACTED = "[redacted]"
#: the start of the name of a gunicorn's metrics folder (in the temporary folder), before its pid and a dash
METRICS_PREFIX = "nectar-metrics-"
#: the end of the name of the lock file beside a metrics folder, held by its gunicorn while it lives
LOCK_SUFFIX = ".lock"
#: glibc's ``mallopt`` parameter for the number of arenas, and how many the API's threads share
M_ARENA_MAX, API_ARENAS = -8, 2
#: a ``name=value`` pair of a query string (or of a URL's path parameters)
_PAIR = re.compile(r"(?:^|(?<=[?&;]))([^=&;#?/\s]+)=([^&;#\s]*)")
#: request headers that are credentials, as the access log's ``%({name}i)s`` atoms name them
_SECRET_HEADERS = frozenset({"{authorization}i", "{cookie}i", "{proxy-authorization}i"})


class ReadTimeout(NoMoreData):
    """A request did not arrive within the read timeout (gunicorn closes the connection quietly, as on a hang-up;
    an application reading the body sees a disconnected client)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(b"")
        self.seconds = seconds

    def __str__(self) -> str:
        return f"the request did not arrive within {self.seconds:g}s"


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, each read bounded by the time left until its connection's deadline.

    What has arrived is read at once, without waiting (``MSG_DONTWAIT``, on a plain socket); only a read that would
    wait sets the socket's timeout (to the time left) and puts it back after: a timeout set and unset is two
    ``ioctl`` and a ``poll`` before the ``recv``, each releasing the GIL, and the request of a kept-alive connection
    has arrived when gunicorn's poller hands it over (4 system calls per request read -> 1)."""

    def __init__(self, conn: DeadlineConn, source: SocketUnreader) -> None:
        super().__init__(source.sock, source.mxchunk)
        self.buf = source.buf  # anything read ahead already
        self.conn = conn
        #: an SSL socket takes no flags (and what it has decrypted is not the socket's to tell)
        self.plain = isinstance(source.sock, socket.socket) and not isinstance(source.sock, ssl.SSLSocket)

    def chunk(self, size_hint: int | None = None) -> bytes:
        # past the deadline, what already arrived is still read (an app may read a body late): only waiting ends
        if self.plain:
            size = self.mxchunk if not size_hint or size_hint <= self.mxchunk else min(size_hint, self.max_body_chunk)
            try:
                return self.sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:  # nothing yet: wait for it, until the deadline
                pass
        self.sock.settimeout(max(self.conn.read_deadline - time.monotonic(), 0.0))
        try:
            return bytes(super().chunk(size_hint))
        except (TimeoutError, BlockingIOError):
            raise self.conn.timed_out() from None
        finally:
            self.sock.settimeout(None)  # blocking again, as gunicorn wants it for writing the answer


class DeadlineConn(TConn):
    """A connection whose requests must each arrive within ``read_timeout`` seconds."""

    def __init__(self, read_timeout: float, log: Any, *args: Any) -> None:
        super().__init__(*args)
        self.read_timeout = read_timeout
        self.log = log
        self.read_deadline = time.monotonic() + read_timeout
        #: requests read on this connection so far
        self.requests = 0
        #: whether its socket is in its worker's epoll (armed or not)
        self.registered = False

    def start_request(self) -> None:
        self.read_deadline = time.monotonic() + self.read_timeout

    def init(self) -> None:
        fresh = not self.initialized
        super().init()  # waits for the first byte of a new connection (gunicorn defers idle ones to its poller)
        if fresh:
            self.start_request()  # counted from the first byte, not from the accept
            if not self.is_http2 and type(self.parser.unreader) is SocketUnreader:
                self.parser.unreader = DeadlineUnreader(self, self.parser.unreader)

    def timed_out(self) -> ReadTimeout:
        self.log.warning("closing the connection from %s: %s", _peer(self.client), ReadTimeout(self.read_timeout))
        with suppress(OSError):  # already gone
            self.sock.shutdown(socket.SHUT_RD)
        return ReadTimeout(self.read_timeout)


class QuietSocket(socket.socket):
    """A client's socket whose blocking mode and timeout are set only when they change: ``setblocking`` and
    ``settimeout`` make an ``ioctl`` (letting go of the GIL) each call, and gunicorn calls them at each request of a
    kept-alive connection to set what is set (``handle``'s ``setblocking(True)``, ``finish_body``'s timeout put back).
    Python keeps the socket's mode with its timeout (``gettimeout``: None blocking, 0.0 not, a number a deadline), so
    a call that would not change it changes nothing of the descriptor either."""

    __slots__ = ()

    @classmethod
    def of(cls, sock: socket.socket) -> QuietSocket:
        """``sock`` itself, as a :class:`QuietSocket` (its descriptor and timeout taken over)."""
        timeout = sock.gettimeout()
        quiet = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        quiet.settimeout(timeout)
        return quiet

    def setblocking(self, flag: bool) -> None:
        if self.gettimeout() != (None if flag else 0.0):
            super().setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        if value != self.gettimeout():
            super().settimeout(value)


def defer_accept(listeners: Iterable[Any]) -> None:
    """Each TCP listener of ``listeners`` (gunicorn's, or sockets) hands a new connection over once its client's first
    bytes have arrived (``TCP_DEFER_ACCEPT``, Linux; elsewhere, or on a Unix socket, nothing changes). Without it the
    handshake woke a worker's loop to accept, its thread then waited in a poll for the request: two wake-ups per new
    connection, and the client's ``connect`` woke the API while the client still had its request to send (on a
    loaded machine, the API then ran and the client waited for a core: a POST's p90 from its send to the thread
    having its request was 14-19 ms at a load of 20 on 2 cores, its median 0.4 ms)."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None:
        return
    for listener in listeners:
        if listener.family in (socket.AF_INET, socket.AF_INET6):
            with suppress(OSError):  # not a TCP socket after all: it accepts as it did
                listener.setsockopt(socket.IPPROTO_TCP, option, DEFER_ACCEPT)


class ReadTimeoutWorker(ThreadWorker):
    """gunicorn's gthread worker, reading each request under a deadline (see :class:`DeadlineConn`), and closing a
    kept-alive connection after its ``keepalive_requests``-th answer (0: never); its threads answer what they see
    ready themselves (leader/followers), with no loop between the socket and the thread.

    gthread's loop thread waited on every socket and handed each ready one to its pool, whose thread then woke to
    answer: two wake-ups in the worker per request, the second one of a pool thread behind the run queue on a loaded
    machine. Here each of the ``threads`` threads that answers nothing waits on one ``epoll`` itself, every socket
    armed for one event at a time (``EPOLLONESHOT``): the kernel wakes one waiting thread per ready socket, and
    that thread accepts or reads and answers it, then arms the socket again (a kept-alive connection goes back to
    the ``epoll``, holding no thread). So a request that waits (on S3, luigid, a slow client within its read
    deadline) holds its own thread and no other connection's answer; at most ``threads`` requests are answered at
    once; a worker whose threads all answer one has none waiting and takes no new connection (another worker's free
    thread does: accepted, it would wait behind them). gunicorn's main thread keeps the rest: the heartbeat, the
    kept-alive connections' timeouts, the graceful stop (on a signal, or after ``max_requests``).

    A client keeps its connection to the worker that accepted it; when a worker is recycled its clients reconnect
    before its successor is forked, all to the other worker, which then answered every request while its new
    sibling sat idle (for as long as the clients' connections lived). A bound on the requests a connection carries
    (nginx's ``keepalive_requests``, Apache's ``MaxKeepAliveRequests``) spreads them again.
    """

    read_timeout = READ_TIMEOUT
    keepalive_requests = KEEPALIVE_REQUESTS
    epoll: select.epoll
    listening: dict[int, Any]
    expired: dict[int, DeadlineConn]
    paused: set[int]
    conns_lock: threading.Lock
    stop_read: int
    stop_write: int
    #: threads waiting on the epoll, and started
    waiting: int
    started: int
    #: whether the worker takes new connections (until it stops)
    accepting: bool

    def run(self) -> None:
        """Start the threads that answer (:meth:`follow`), then keep the worker alive, its kept-alive connections
        within their timeout, until it stops; then stop gracefully as gthread does."""
        settings_read_once(self.cfg)
        peers_checked_once()
        self.epoll = select.epoll()  # Linux's, as the service runs there (gthread's loop is not kept beside it)
        self.listening = {listener.fileno(): listener for listener in self.sockets}
        #: kept-alive connections (and new ones whose request has not come), armed in the epoll, oldest first
        self.keepalived_conns: Any = {}  # gthread's deque; its length is the keep-alive bound's
        #: connections shut down for their timeout and still armed: the thread that sees their event closes them
        self.expired: dict[int, DeadlineConn] = {}
        #: kept-alive connections whose client sent its next request (or its end) before their timeout passed, while
        #: no thread was free: armed, answered by the next thread that waits (:meth:`murder_keepalived`)
        self.sent: dict[int, DeadlineConn] = {}
        #: listeners left unarmed while the worker holds its ``worker_connections``
        self.paused: set[int] = set()
        self.conns_lock = threading.Lock()  # the two above, the epoll's registrations, the threads' counts
        stop_read, self.stop_write = os.pipe()
        self.epoll.register(stop_read, select.EPOLLIN)  # level-triggered: once written, every thread sees it
        for fd, listener in self.listening.items():
            listener.setblocking(False)
            self.epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        self.stop_read, self.waiting, self.started, self.accepting = stop_read, 0, 1, True
        self.another(1)
        if not self.started:  # no thread answers: the worker ends, and its master forks another
            raise RuntimeError("could not start the worker's first answering thread")
        while self.alive:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=1.0)  # woken by a signal's handler or a stopping thread
            if not self.is_parent_alive():
                break
            self.murder_keepalived()
        with self.conns_lock:
            self.accepting = False  # a thread woken for a listener before this accepts nothing (it would be reset)
            for fd in self.listening:
                with suppress(OSError, ValueError):
                    self.epoll.unregister(fd)
            self._cap_keepalive(time.monotonic() + STOP_KEEPALIVE_LINGER)
        graceful_timeout = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() <= graceful_timeout:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=min(1.0, self._next_timeout()))
            self.murder_keepalived()
        os.write(self.stop_write, b"\0")
        with self.conns_lock:
            for conn in [*self.keepalived_conns.values(), *self.expired.values(), *self.sent.values()]:
                conn.close()
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for s in self.sockets:
            s.close()

    def _cap_keepalive(self, deadline: float) -> None:
        for conn in self.keepalived_conns.values():
            conn.timeout = min(conn.timeout, deadline)

    def _next_timeout(self) -> float:
        with self.conns_lock:
            first = next(iter(self.keepalived_conns.values()), None)
        return 1.0 if first is None else max(first.timeout - time.monotonic(), 0.0)

    def murder_keepalived(self) -> None:
        """Shut down the kept-alive connections whose timeout passed (in the main thread); each is closed by the thread
        that sees the event this makes (a descriptor closed here could be reused by an accept while a thread has just
        seen the old connection's event). One whose client has sent since is no idle connection: its request waits
        in the epoll for a free thread (every thread answers one), and is answered as gthread's queue answered it,
        not cut with ``RemoteDisconnected`` (a POST its client would not send again), nor by a stop's linger."""
        now = time.monotonic()
        with self.conns_lock:
            while self.keepalived_conns:
                fd, conn = next(iter(self.keepalived_conns.items()))
                if conn.timeout > now:
                    break
                del self.keepalived_conns[fd]
                if arrived(conn.sock):
                    self.sent[fd] = conn
                    continue
                self.expired[fd] = conn
                with suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

    def another(self, number: int) -> None:
        """One thread more (:meth:`follow`), up to ``threads``: started when the last one waiting is given a socket,
        as gthread's pool starts one when none is idle; a worker that never answers two at once has two. Counted in
        :attr:`started` by the caller, under the lock (``number``: the count with it).

        A thread that cannot be started (``RuntimeError``: the process's limit of threads, or memory) is counted off
        again and logged: its caller answers what it was given all the same, and the next thread given the last
        socket asks again. The error ended the caller's life before, with the socket it had taken (a listener's:
        the worker accepted nothing more, alive and beating for its master) never armed again."""
        try:
            threading.Thread(target=self.follow, name=f"answer-{number}", daemon=True).start()
        except RuntimeError:
            with self.conns_lock:
                self.started -= 1
            self.log.warning("could not start an answering thread (%d running)", self.started, exc_info=True)

    def follow(self) -> None:
        """A thread's life: wait on the epoll with the other free threads, answer what it is given, again. The kernel
        wakes the thread that began waiting last (its caches warm; the others sleep on)."""
        while True:
            with self.conns_lock:
                self.waiting += 1
            try:
                events = self.epoll.poll(-1, 1)
            except OSError:  # the epoll closed under it: the worker is ending
                return
            if any(fd == self.stop_read for fd, _ in events):
                return
            more = 0  # the number of the thread to start, if one is
            with self.conns_lock:
                self.waiting -= 1
                if not self.waiting and self.started < self.cfg.threads:
                    self.started = more = self.started + 1
            if more:
                self.another(more)
            for fd, _ in events:
                try:
                    listener = self.listening.get(fd)
                    if listener is not None:
                        self.accept(listener)
                    else:
                        self.claimed(fd)
                except Exception:  # a thread lost would be a request fewer answered at once, for the worker's life
                    self.log.exception("Unexpected error answering a connection")
                    self.alive = False
                    self.method_queue.defer(lambda: None)

    def claimed(self, fd: int) -> None:
        """The connection of ``fd``, ready: answered, or closed if its timeout passed."""
        with self.conns_lock:
            conn = self.keepalived_conns.pop(fd, None) or self.sent.pop(fd, None)
            expired = None if conn is not None else self.expired.pop(fd, None)
            if expired is not None:
                with suppress(OSError, ValueError):
                    self.epoll.unregister(fd)
                self._closed()
        if expired is not None:
            expired.close()
            self._tell_if_stopping()
        elif conn is not None:
            conn.data_ready = True  # a new connection deferred here (gthread's ``_DEFER``) has its bytes now
            self.answer(conn)

    def accept(self, listener: socket.socket) -> None:
        """gunicorn's own ``accept``, making a :class:`DeadlineConn`, answered by this thread once the listener is
        armed again for the next free thread."""
        with self.conns_lock:  # a stopping worker's main thread ends it once it holds no connection: none after
            if not self.accepting:
                return
            try:
                client_sock, client_addr = listener.accept()
            except OSError as e:
                self._listen(listener.fileno())
                if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            self.nr_conns += 1
            self._listen(listener.fileno())
        client_sock = QuietSocket.of(client_sock)
        client_sock.setblocking(True)
        conn = DeadlineConn(self.read_timeout, self.log, self.cfg, client_sock, client_addr, listener.getsockname())
        if arrived(client_sock):
            conn.data_ready = True  # gthread's handle would wait for it in a selector of its own (4 system calls)
            self.answer(conn)
        else:  # nothing yet (a Unix socket, or the kernel gave up deferring the accept): wait in the epoll, no thread
            conn.timeout = time.monotonic() + self.cfg.keepalive
            self.keep(conn)

    def _listen(self, fd: int) -> None:
        """The listener of ``fd`` armed again for the next free thread, unless the worker holds gunicorn's
        ``worker_connections`` (then once one of them closes). Under :attr:`conns_lock`."""
        if self.nr_conns >= self.worker_connections:
            self.paused.add(fd)
            return
        with suppress(OSError, ValueError):  # unregistered by a stop meanwhile
            self.epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def _closed(self) -> None:
        """A connection less (under :attr:`conns_lock`)."""
        self.nr_conns -= 1
        for fd in [*self.paused]:
            self.paused.discard(fd)
            self._listen(fd)

    def answer(self, conn: DeadlineConn) -> None:
        """gunicorn's ``handle`` then what its ``finish_request`` did in its loop, in this thread: the connection
        kept (back in the epoll), or closed."""
        try:
            result = self.handle(conn)
            while result and result is not _DEFER and conn.parser.unreader.buf.getvalue():
                result = self.handle(conn)  # a body drain read ahead into the next request: no event will come
        except Exception:
            result = None
        if result is _DEFER and self.alive:
            conn.timeout = time.monotonic() + self.cfg.keepalive
            self.keep(conn)
        elif result and result is not _DEFER:
            conn.set_timeout()
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            self.keep(conn)
        else:
            with self.conns_lock:
                if conn.registered:
                    with suppress(OSError, ValueError):
                        self.epoll.unregister(conn.sock.fileno())
                self._closed()
            with suppress(Exception):
                conn.close(graceful=result is not None)
        self._tell_if_stopping()

    def keep(self, conn: DeadlineConn) -> None:
        """``conn`` back in the epoll, for the next free thread to answer once its client sends again."""
        fd = conn.sock.fileno()
        with self.conns_lock:
            try:
                if conn.registered:
                    self.epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
                else:
                    self.epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
                    conn.registered = True
            except (OSError, ValueError):  # its socket closed under it (gunicorn closes an SSL one that ended)
                self._closed()
            else:
                self.keepalived_conns[fd] = conn  # before the lock is let go: its event's thread waits for it
                return
        conn.close()

    def _tell_if_stopping(self) -> None:
        """Wake the main thread of a stopping worker (a request's ``max_requests`` set it stopping, or a connection
        it waits for is gone)."""
        if not self.alive:
            self.method_queue.defer(lambda: None)

    def handle(self, conn: DeadlineConn) -> Any:
        conn.start_request()  # a kept-alive connection's next request gets the whole time again
        return super().handle(conn)

    def _keepalive_after(self, conn: DeadlineConn, keepalive: bool) -> bool:
        """gunicorn's own (a request's unread body is drained before its connection is kept), without the drain when
        nothing of the body is left to read (a GET has none; an app may have read it all): gunicorn's drain sets the
        socket's timeout and puts it back, two ``ioctl`` each releasing the GIL, to read nothing."""
        if keepalive and read_to_its_end(conn.parser.mesg):
            return True
        return bool(super()._keepalive_after(conn, keepalive))

    def handle_request(self, req: Any, conn: DeadlineConn) -> Any:
        """gunicorn's own, the answer saying ``Connection: close`` once the connection has carried its share."""
        conn.requests += 1
        if 0 < self.keepalive_requests <= conn.requests:
            req.force_close()
        return super().handle_request(req, conn)


def settings_read_once(cfg: Any) -> None:
    """Each of gunicorn's settings in ``cfg`` read now into the object itself, where a read finds it without gunicorn's
    ``Config.__getattr__`` (a check of the name, then the setting's ``get()``: ~20 bytecodes a read, and gunicorn reads
    24 a request: ~480 of the ~6,900 of a new run's POST up to the registry's word). One set later (``cfg.set``) is
    read again. A name gunicorn's ``Config`` class has itself (a property: ``worker_class``, ``is_ssl``...) is left to
    it. A worker's settings are its master's as it forked it; a reload forks new workers, which read theirs."""
    config_class = type(cfg)
    names = [name for name in cfg.settings if not hasattr(config_class, name)]
    vars(cfg).update((name, cfg.settings[name].get()) for name in names)
    read = set(names)

    def set_and_read(name: str, value: Any) -> None:
        config_class.set(cfg, name, value)
        if name in read:
            vars(cfg)[name] = cfg.settings[name].get()

    vars(cfg)["set"] = set_and_read


#: most peer addresses whose check :func:`peers_checked_once` keeps (forgotten all at once past it)
PEERS_CHECKED = 256
#: gunicorn's check of a peer as :func:`peers_checked_once` set it in this process (None: not set)
_peers_checked: Any = None


def peers_checked_once() -> None:
    """gunicorn's check of a request's peer against an allow list (``forwarded_allow_ips`` at every request, to know
    whether it may set forwarding headers; ``proxy_allow_ips``) made once per peer address and list, in this process:
    gunicorn parses the address with ``ipaddress`` each time (~370 of the ~6,500 bytecodes of a new run's POST to the
    registry's word) to test it against the same networks. The answer is kept with the networks it was given (the
    ``Config``'s, made once) and a copy of the list: other networks, or a list that changed, are checked again."""
    global _peers_checked
    checked = gunicorn.http.message._ip_in_allow_list
    if checked is _peers_checked:
        return
    answers: dict[tuple[str, int], tuple[object, list[str], bool]] = {}

    def ip_in_allow_list(ip_str: str, allow_list: list[str], networks: object) -> bool:
        key = (ip_str, id(networks))
        found = answers.get(key)
        if found is not None and found[0] is networks and found[1] == allow_list:
            return found[2]
        answer = bool(checked(ip_str, allow_list, networks))
        if len(answers) >= PEERS_CHECKED:
            answers.clear()
        answers[key] = (networks, list(allow_list), answer)  # the networks held: their id names no others meanwhile
        return answer

    gunicorn.http.message._ip_in_allow_list = _peers_checked = ip_in_allow_list


def arrived(sock: socket.socket) -> bool:
    """Whether a byte (or the end, or an error) of what the client sends on ``sock`` is there to read, without
    waiting: asked of its descriptor, so of a TLS socket too (whose ``recv`` takes no flags)."""
    ready = select.poll()
    ready.register(sock.fileno(), select.POLLIN)
    return bool(ready.poll(0))


def read_to_its_end(request: Any) -> bool:
    """Whether nothing is left of gunicorn's ``request``'s body: it has a length (none: 0), all of it read by the
    app, and no byte of it kept back unread (a chunked body or one read until the connection closes: False)."""
    body = getattr(request, "body", None)
    return (
        isinstance(body, Body)
        and not body.failed
        and isinstance(body.reader, LengthReader)
        and body.reader.length == 0
        and body.buf.tell() == 0
    )


def redact(text: str) -> str:
    """``text`` (a URL, a request line, a query string) with the values of :data:`SECRET_PARAMS` replaced."""

    def pair(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if unquote_plus(name).lower() in SECRET_PARAMS else match.group(0)

    return _PAIR.sub(pair, text)


class RedactingLogger(glogging.Logger):
    """gunicorn's logger, keeping credentials out of the access log and control characters out of text logs."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if name.lower() in _SECRET_HEADERS:
                atoms[name] = REDACTED
            elif isinstance(value, str):
                atoms[name] = redact(value)
        return atoms

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if cfg.logconfig_dict or cfg.logconfig_json or cfg.logconfig:
            return  # the configuration's formatters (NECTAR_LOG_FORMAT=json: nectar.logs.format.JsonFormatter)
        # text: gunicorn's formats, escaped; the app's own records (Flask's too) like every other process's
        formats = {
            self.error_log: TextFormatter(self.error_fmt, self.datefmt),
            self.access_log: TextFormatter(self.access_fmt),
        }
        for log, text in formats.items():
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(text)
        configure_logging("text", logging.WARNING)


def _peer(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if isinstance(client, tuple) and len(client) >= 2 else str(client)


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


class _Held(bytearray):
    """A socket's stand-in for :class:`WholeResponse`: what gunicorn sends through it, kept to go out in one write."""

    sendall = bytearray.extend


class WholeResponse(Response):
    """gunicorn's response, its head sent in the same write as its body's first piece (gunicorn's ``write`` sends the
    head, then the piece: two ``sendto``, each one a segment and a wake-up of the client). Nothing else changes: the
    head is made by gunicorn as it was, when it was (at the first piece, or at the close of an answer with no body),
    and a body gunicorn does not send (HEAD, 204, 304, past its Content-Length) is not sent; a chunked body's first
    chunk goes with the head and the rest as before, a file (``sendfile``) after its head as before."""

    sock: Any  # the client's socket; a :class:`_Held` while a first piece is written

    def write(self, arg: bytes) -> None:
        if self.headers_sent:
            Response.write(self, arg)
            return
        sock = self.sock
        held = self.sock = _Held()
        try:
            Response.write(self, arg)  # the head, and what of ``arg`` gunicorn sends, each kept
        finally:
            self.sock = sock
            if held:
                sock.sendall(held)


def whole_answers(worker: Any) -> bool:
    """gunicorn's ``post_worker_init`` hook: a worker serving the service's app sends each answer's head with its body
    (:class:`WholeResponse`, the class gunicorn's ``wsgi.create`` makes a response of in this process); a worker of
    another app (a benchmark's hello world, gunicorn's own baseline) is left as gunicorn has it. Whether it did."""
    if "nectar" not in getattr(getattr(worker, "wsgi", None), "extensions", {}):
        return False
    gunicorn.http.wsgi.Response = WholeResponse
    return True


def json_error_pages(worker: object) -> None:
    """gunicorn's ``post_worker_init`` hook: this worker answers its own errors in JSON."""
    util.write_error = write_json_error


def make_metrics_folder(folder: str, pid: int | None = None) -> tuple[str, int]:
    """A metrics folder in ``folder`` for the gunicorn of ``pid`` (this process), and the descriptor of the lock
    beside it that this process holds until it exits: the folder's path and the lock's descriptor.

    The lock file (the folder's path + ``.lock``) is made and locked before the folder, so a folder is never
    without a held lock while its gunicorn lives. The lock, not the pid, tells another gunicorn whether the folder's
    owner is gone: the pid may be no process of its own pid namespace (a container sharing the temporary folder) or
    another process's by now. Forked workers share the lock; a process this one starts does not (not inheritable).
    """
    prefix = f"{METRICS_PREFIX}{pid or os.getpid()}-"
    # made under a name the sweep ignores and named a lock once locked: a sweep never finds it free
    descriptor, staged = tempfile.mkstemp(prefix=prefix, suffix=f"{LOCK_SUFFIX}.new", dir=folder)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: no one else holds it
    lock = staged.removesuffix(".new")
    os.rename(staged, lock)
    path = lock.removesuffix(LOCK_SUFFIX)
    os.mkdir(path, 0o700)
    return path, descriptor


def remove_metrics_folder(path: str) -> None:
    """Remove a metrics folder and its lock file (its gunicorn is exiting, or gone)."""
    shutil.rmtree(path, ignore_errors=True)
    with suppress(FileNotFoundError):
        os.unlink(path + LOCK_SUFFIX)


def remove_orphan_metrics(folder: str) -> list[str]:
    """Remove the metrics folders in ``folder`` whose gunicorn is gone, and their lock files: a gunicorn killed
    with SIGKILL never ran its ``on_exit``. The folders removed.

    Gone means its lock can be taken (:func:`make_metrics_folder`); a folder without a lock file, left by an older
    release, is gone when its pid is no process."""
    removed = []
    for entry in os.scandir(folder):
        name = entry.name.removesuffix(LOCK_SUFFIX)
        pid = name[len(METRICS_PREFIX) :].partition("-")[0]
        if not name.startswith(METRICS_PREFIX) or not pid.isdigit() or entry.is_symlink():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except FileNotFoundError:  # removed with its lock file a moment ago (by this sweep or another gunicorn's)
            continue
        path = os.path.join(folder, name)
        if entry.name.endswith(LOCK_SUFFIX):
            if _lock_free(entry.path):
                remove_metrics_folder(path)
                removed.append(path)
        elif entry.is_dir(follow_symlinks=False) and not os.path.exists(path + LOCK_SUFFIX) and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _lock_free(lock: str) -> bool:
    """Whether no process holds the lock file ``lock`` (False if it is gone: its owner removed it)."""
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)  # releases the lock, if this took it
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def few_malloc_arenas(arenas: int = API_ARENAS) -> bool:
    """Let the threads started from now on share ``arenas`` glibc malloc arenas (``MALLOC_ARENA_MAX``); False
    where the C library is not glibc. ``mallopt`` is looked up among the symbols this process has loaded (its C
    library's): ``ctypes.util.find_library`` ran ``ldconfig -p`` in the gunicorn master at each start."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas) == 1)


def exit_without_teardown() -> None:
    """End this gunicorn worker now, with the status gunicorn is ending it with, skipping Python's teardown.

    Called from ``worker_exit`` (gunicorn calls it in the worker as the ``SystemExit`` that ends it propagates,
    after its loop answered every connection or its ``graceful_timeout`` passed). The teardown would free every
    object inherited from the master (copy-on-write: each page touched is copied) and run exit handlers the master
    runs itself; the logs are flushed first. Anything else ending the worker (not a ``SystemExit`` with a status)
    is left to Python."""
    from nectar.exits import exit_code, flush_standard_streams

    ending = sys.exc_info()[1]
    code = exit_code(ending) if isinstance(ending, SystemExit) else None
    if code is None:
        return
    logging.shutdown()
    flush_standard_streams()
    os._exit(code)
