"""Talking to luigid: a lean keep-alive transport for its JSON RPC, shared by our client and luigi's workers.

luigi's own ``RemoteScheduler`` spends about 1 ms of CPU on every call (a ``requests`` post and a
``tenacity`` retrier built per call) against about 0.2 ms for the call itself, and an attempt makes
three calls per task. :class:`LuigidRPC` is that scheduler over :class:`Connections` (one
persistent ``http.client`` connection per thread and process, through the one hook of
:mod:`nectar.luigi_internals`): a call that fails is retried at once on a fresh connection, then
handed to luigi's own retry loop (``rpc-retry-attempts``, ``rpc-retry-wait``). The calls whose answers
luigi's worker never reads ride with its next call in one request (:data:`BATCH_RPC`), to our luigid,
which switches each connection of ours to frames once asked (:data:`UPGRADE_RPC`): no HTTP per call.
:class:`SchedulerClient` asks luigid about one task, never the task list.

Every call carries the scheduler secret (:func:`scheduler_secret`) in :data:`SECRET_HEADER`: the
guard in front of luigid (:mod:`nectar.guard`) lets only a caller that has it change luigid's state.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit

from nectar import forks
from nectar.config import Settings
from nectar.errors import SchedulerUnavailable
from nectar.luigi_internals import UNCOUNTED, RemoteScheduler, failure_named
from nectar.signing import load_secret
from nectar.stdlib_internals import environ_data

#: the shared secret of luigid's guard and our processes: this variable, else ``<data_dir>/scheduler_secret``
SECRET_ENV = "NECTAR_SCHEDULER_SECRET"
#: its name as ``os.environ`` keeps it (:func:`~nectar.stdlib_internals.environ_data`)
_SECRET_KEY = os.fsencode(SECRET_ENV)
SECRET_FILE = "scheduler_secret"
#: the header our calls carry it in
SECRET_HEADER = "X-Nectar-Scheduler-Secret"
#: a ``dep_graph`` argument (luigi's ignores it): only what bears on DISABLED steps is wanted, and nothing (``{}``)
#: while luigid holds none, which luigid answers without its prune of every task (:mod:`nectar.luigid_server`)
DISABLED_ONLY = "nectar_disabled_only"
#: the arguments of ``dep_graph`` besides the task id, as :meth:`SchedulerClient.disabled` asks it
DISABLED_QUESTION = {"include_done": False, DISABLED_ONLY: True}
#: the RPC of our luigid (:mod:`nectar.luigid_server`) that runs several calls in turn, each answered: a JSON body,
#: ``[[method, arguments], ...]``, answered ``[answer, ...]``, each ``{"response": ...}`` as the call alone is answered,
#: or ``{"status": 500, "reason": ...}`` for a call that failed
BATCH_RPC = "nectar_batch"
#: how a server without :data:`BATCH_RPC` answers it, the batch not run: luigi's own luigid (404), a proxy or server
#: that takes no POST there (405) or does not know the request (400, 501). A call's own failure inside a batch is
#: answered within a 200 (``{"status": 500}``), and any other status of the batch's (a 5xx, the guard's 401 and 403)
#: is the first call's error
NO_BATCH_RPC = frozenset({400, 404, 405, 501})
#: how a proxy before luigid refuses a body over its limit (nginx's ``client_max_body_size``), the request not passed
#: on: that batch's calls are sent again one by one, and batches go on (those as large or larger go alone at once,
#: until :data:`TOO_LARGE_RETRY` of them have)
TOO_LARGE = 413
#: how many batches as large as one refused (:data:`TOO_LARGE`) go call by call before one is sent whole again: a
#: proxy's limit raised since is used again, at the cost of one more refused (not run) request when it was not
TOO_LARGE_RETRY = 100
#: the RPC of our luigid that switches a connection of ours (its request carrying the scheduler secret, which the
#: guard checks as for any request) from HTTP to :data:`FRAMED`: a ``GET`` with ``Upgrade: nectar-rpc``, answered
#: ``101``; any other answer (luigi's own luigid's 404, a proxy that refuses ``Upgrade``) leaves that scheduler's
#: calls on HTTP
UPGRADE_RPC = "nectar_upgrade"
#: the protocol of an upgraded connection: each request a frame, its length (:data:`FRAME_HEAD` bytes, big-endian)
#: then a :data:`BATCH_RPC` body, answered with a frame of that batch's answer; no HTTP parse per call on either side
FRAMED = "nectar-rpc"
FRAME_HEAD = 4
#: bytes a read of an upgraded connection asks for at once (:func:`_read_frames`)
_RECEIVE = 65536
#: where the RPCs are, under luigid's URL
RPC_PATH = "/api/"

#: the content types of a call's body: luigi's form, and a batch's JSON
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

#: what a failed call raises
ERRORS = (OSError, http.client.HTTPException)
#: how a request fails on a kept-alive connection that luigid has closed meanwhile (restarted, idle timeout)
CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


#: each byte as ``urllib.parse.quote_plus`` writes it: unreserved characters as they are, a space as ``+``, others
#: ``%XX``
_FORM_BYTES = [
    chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "_.-~") else "+" if b == 0x20 else f"%{b:02X}"
    for b in range(256)
]


def form_body(form: dict[str, str]) -> bytes:
    """``urllib.parse.urlencode(form).encode()``, each string's UTF-8 bytes mapped through one table by
    ``str.translate``: ``quote_plus`` looks each byte up in a Python loop, about 25 µs for an ``add_task``'s
    ~500-byte form, three times per step of a build."""
    return "&".join(f"{_form_text(name)}={_form_text(value)}" for name, value in form.items()).encode("ascii")


def _form_text(text: object) -> str:
    return str(text).encode("utf-8").decode("latin-1").translate(_FORM_BYTES)


class LuigidError(http.client.HTTPException):
    """luigid answered with an HTTP error status."""


class SchedulerPaused(SchedulerUnavailable):
    """luigid is paused: it grants no task to any worker until it is unpaused."""


#: the secret, read once per process (and inherited by forked attempts): an attempt asks for it on its way to run
_SECRETS: dict[tuple[Path, bytes | None], bytes] = {}


def load_scheduler_secret(settings: Settings) -> bytes:
    """The secret luigid's guard asks of our calls: :data:`SECRET_ENV` if set, else the file :data:`SECRET_FILE`
    in the data folder, created once (mode 0600) by whichever process needs it first. The variable is read in the
    environment's own dictionary (a spare asks twice a run: unset, ``os.environ.get`` raised and caught a KeyError)."""
    key = (settings.data_dir, environ_data().get(_SECRET_KEY))
    if key not in _SECRETS:
        _SECRETS[key] = load_secret(settings, env=SECRET_ENV, filename=SECRET_FILE)
    return _SECRETS[key]


def scheduler_secret(settings: Settings) -> str | None:
    """The secret our calls to luigid carry (None when the settings name no luigid)."""
    return load_scheduler_secret(settings).decode("utf-8") if settings.scheduler_url else None


class Connections:
    """Keep-alive HTTP connections to the luigid at ``url``, one per thread (a forked child opens its own),
    each call carrying ``secret`` (if any) for luigid's guard.

    A call whose answer nobody reads now is :meth:`send`: written at once, so that luigid works on it while the
    caller goes on; its answer is read with the thread's next call (:meth:`post`, :meth:`post_many`, :meth:`flush`),
    which sends it again on a new connection if the one it went on was lost first. luigid gets every call of a
    thread in the order it was made; one whose answer was lost with its connection may arrive twice (sent again,
    as luigi's own retry loop sends a call again).

    With ``batches``, a call sent is held instead, and the thread's next call sends it and those held with it in one
    request (:data:`BATCH_RPC`): luigid runs them in turn, as one by one, and answers each (about 0.9 ms of luigid's
    CPU saved per request, most of it tornado's HTTP handling). A luigid that answers that RPC as a server without it
    does (:data:`NO_BATCH_RPC`: luigi's own luigid's 404, a proxy's 405) is sent one request per call from then on, by
    this object. A batch refused as too large (:data:`TOO_LARGE`) is not run: its calls go again one request each,
    and a later batch as large goes so at once (the next :data:`TOO_LARGE_RETRY` of them).

    With ``frames`` and a secret, each new connection first asks luigid to leave HTTP (:data:`UPGRADE_RPC`); once
    switched, each request is a frame (:data:`FRAMED`), answered and failing as over HTTP (a call's 404 or 500 as
    :class:`LuigidError`, a connection closed before the answer as ``RemoteDisconnected``, under the same rules of
    sending again). A luigid that does not switch it is talked to over HTTP, by this object, from then on.
    """

    #: most calls sent ahead and unread at once: the next waits for their answers first
    MAX_UNREAD = 32

    def __init__(
        self, url: str, timeout: float, secret: str | None = None, batches: bool = False, frames: bool = True
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL of luigid: {url!r}")
        self._factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host, self._port, self.timeout = parts.hostname, parts.port, timeout
        self.base_path = parts.path.rstrip("/")
        self._headers: dict[str, str] = {}
        if parts.username is not None:  # http://user:password@host, as luigi's fetchers accept it
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        if secret:
            self._headers[SECRET_HEADER] = secret
        self._local = threading.local()
        #: whether the server closed a connection with calls unanswered on it (one call per connection, as an
        #: HTTP/1.0 server answers): nothing is sent ahead to it any more
        self._closes = False
        #: whether calls sent are held and sent together (:data:`BATCH_RPC`): until luigid says it has no such RPC
        self.batches = batches
        #: the length of the smallest batch request refused as too large (:data:`TOO_LARGE`): none that long is sent,
        #: until :data:`TOO_LARGE_RETRY` batches went call by call for it (counted in ``_sent_alone``)
        self._too_large: int | None = None
        self._sent_alone = 0
        #: whether each new connection asks to leave HTTP for :data:`FRAMED` (only with the secret, which the guard
        #: asks of it): until luigid answers it otherwise than ``101`` (no such RPC, a proxy that refuses it)
        self.frames = frames and bool(secret)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before (a server may have closed it since)."""
        held: tuple[int, http.client.HTTPConnection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == forks.pid():
            return held[1], True
        conn = self._factory(self._host, self._port, timeout=self.timeout)
        self._local.held = (forks.pid(), conn)
        return conn, False

    def _unread(self) -> _Unread:
        """This thread's calls sent ahead, their answers unread (a forked process starts with none)."""
        unread: _Unread | None = getattr(self._local, "unread", None)
        if unread is None or unread.pid != forks.pid():
            unread = self._local.unread = _Unread(forks.pid())
        return unread

    def open(self) -> None:
        """Connect this thread's connection ahead of its first call (a failure is left to that call)."""
        conn, reused = self._connection()
        if not reused:
            try:
                self._connect(conn)
            except ERRORS:
                self._drop()

    def _drop(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = None
        unread: _Unread | None = getattr(self._local, "unread", None)
        if unread is not None:
            unread.sent = 0  # what was written on the connection dropped is sent again on the next
        if held is not None and held[0] == forks.pid():
            held[1].close()

    def post(self, path: str, form: dict[str, str]) -> bytes:
        """POST ``form`` to ``path`` (under the URL's own path), after what this thread sent ahead; the answer's
        body. Raises one of :data:`ERRORS` (an error status as :class:`LuigidError`)."""
        return _body(self.post_many([(path, form)])[0])

    def call(self, path: str, form: dict[str, str]) -> Content:
        """:meth:`post`, its answer as read: its body, or its entry in a batch's answer already decoded (not written
        back to JSON for luigi to read it again: :func:`response_of` reads either)."""
        return self.post_many([(path, form)])[0]

    def send(self, path: str, form: dict[str, str], tag: int = 0) -> None:
        """POST ``form`` to ``path`` now, its answer read with this thread's next call (which raises what it
        finds: an error status, or luigid unreachable when sent again)."""
        unread = self._unread()
        if len(unread.calls) >= self.MAX_UNREAD:
            self.flush()
        unread.calls.append((path, form, tag))
        if self._closes or self.batches:  # sent with the next call (after the answer a server closes on, or batched)
            return
        try:
            conn, _ = self._connection()
            if conn.sock is None:
                self._connect(conn)
            self._write(conn, unread)
        except ERRORS:
            self._drop()  # the next call sends it again, on a new connection
        except BaseException:  # an interruption (a lease's signal) mid-write: the connection is out of step
            self._drop()
            raise

    def ask(self, path: str, form: dict[str, str]) -> Callable[[], Content]:
        """POST ``form`` to ``path`` now, as :meth:`send`; what this answers reads its answer (this thread's calls
        before it too) when called, on this thread, raising as :meth:`post` does: its body, or its entry in a
        batch's answer, decoded (:func:`response_of` reads either)."""
        unread = self._unread()
        unread.asked += 1
        tag = unread.asked
        self.send(path, form, tag)

        def answer() -> Content:
            if tag not in unread.kept:
                self.flush()
            if tag not in unread.kept:  # a call of the thread's made meanwhile failed on it
                raise LuigidError(f"luigid's answer to {path} was lost")
            return unread.kept.pop(tag)

        return answer

    def meanwhile(self, work: Callable[[], object]) -> None:
        """Run ``work`` on this thread once its next request is written, before its answer is read: while luigid
        works on it, the thread would only wait (a thread woken then takes the GIL without stalling this one)."""
        self._unread().meanwhile.append(work)

    def _while_luigid_answers(self, unread: _Unread) -> None:
        works, unread.meanwhile = unread.meanwhile, []
        for work in works:
            work()

    def flush(self) -> None:
        """Read the answers of what this thread sent ahead (sending it again if its connection was lost)."""
        if self._unread().calls:
            self.post_many([])

    def post_many(self, calls: list[tuple[str, dict[str, str]]]) -> list[Content]:
        """POST each ``(path, form)`` in turn on this thread's connection, after what it sent ahead, all sent before
        any answer is read (HTTP/1.1 pipelining: luigid answers them in turn, as it would one by one); their
        answers (:data:`Content`). What a server that closes the connection after an answer did not read is sent
        again on a new one. Raises one of :data:`ERRORS` (an error status as :class:`LuigidError`); ``calls`` are then
        forgotten, what was sent ahead and not answered is not."""
        unread = self._unread()
        unread.calls.extend((path, form, 0) for path, form in calls)
        own = len(calls)  # the caller's calls not answered yet: always the last ``own`` of ``unread.calls``
        bodies: list[Content] = []
        alone = False  # whether the calls held were refused as one batch: each is written alone
        try:
            while unread.calls:
                conn, reused = self._connection()
                batch = None if alone else self._batch(unread)
                framed = False
                try:
                    if conn.sock is None:
                        self._connect(conn)
                    framed = self._framed(conn)
                    if batch is None:
                        self._write(conn, unread)
                    else:
                        _sent(conn.sock, _frame(batch) if framed else self._batch_request(batch))
                        unread.sent = len(unread.calls)
                    if unread.meanwhile:
                        self._while_luigid_answers(unread)
                    count = len(unread.calls) if batch is None else 1
                    answers = _read_frames(conn.sock, count) if framed else _read_answers(conn.sock, count)
                    if framed and batch is None:  # each call its own frame, answered as a batch of one
                        answers = [one for answer in answers for one in self._batch_answers(answer, 1, 0)]
                    self._local.answered = conn if framed else None
                except ERRORS as exc:
                    self._drop()
                    if framed and isinstance(exc, TimeoutError) and getattr(self._local, "answered", None) is not conn:
                        # switched (a proxy's 101) but no frame ever answered: frames go nowhere, HTTP from now on
                        self.frames = False
                    if reused and isinstance(exc, CLOSED):  # closed while idle: once more, on a new connection
                        continue
                    raise
                if batch is not None:
                    answers = self._batch_answers(answers[0], len(unread.calls), len(batch))
                    if not answers:  # the batch was not run (no batch RPC, or too large): each call is written alone
                        unread.sent, alone = 0, True
                        continue
                for index, answer in enumerate(answers):
                    if answer.status >= 400:  # it stays first, sent again by the next call (luigi's retry loop);
                        later = len(answers) - index - 1  # those answered after it are done: forgotten
                        own -= max(0, 1 + later - max(1, len(unread.calls) - own))
                        del unread.calls[1 : 1 + later]
                        raise LuigidError(f"luigid answered {answer.status} {answer.reason} to {unread.calls[0][0]}")
                    if len(unread.calls) <= own:
                        own -= 1
                    tag = unread.calls.pop(0)[2]
                    unread.sent -= 1
                    content = answer.body if answer.entry is None else answer.entry
                    if tag:
                        unread.kept[tag] = content
                    bodies.append(content)
                if answers[-1].will_close:
                    self._drop()
                    self._closes = self._closes or bool(unread.calls)
        except BaseException:
            self._drop()  # whatever is left unread on it is sent again, on a new connection
            if own:  # the caller's own calls are its to make again (luigi's retry loop); the rest stay
                del unread.calls[len(unread.calls) - own :]
            raise
        return bodies[len(bodies) - len(calls) :]

    def _batch(self, unread: _Unread) -> bytes | None:
        """The body of the one request of :data:`BATCH_RPC` that sends every call of ``unread`` (none written yet),
        when there are several and each is an RPC as luigi's client posts it (a form of one ``data`` field, its JSON
        arguments)."""
        if not self.batches or unread.sent or len(unread.calls) < 2:
            return None
        calls = [_batch_entry(path, form) for path, form, _ in unread.calls]
        if None in calls:
            return None
        request = f"[{','.join(cast(list[str], calls))}]".encode()
        if self._too_large is None or len(request) < self._too_large:
            return request
        self._sent_alone += 1
        if self._sent_alone <= TOO_LARGE_RETRY:
            return None
        self._too_large, self._sent_alone = None, 0  # sent whole: a 413 again remembers its length again
        return request

    def _batch_request(self, body: bytes) -> bytes:
        return self._request(RPC_PATH + BATCH_RPC, body, JSON)

    def _batch_answers(self, answer: _Answer, count: int, length: int) -> list[_Answer]:
        """The answers of a batch's ``count`` calls (a request ``length`` bytes long), as each alone would have been
        answered (the batch's own error, if luigid answered it with one, as the first call's); none if the batch was
        not run: luigid has no batch RPC (:data:`NO_BATCH_RPC`: from now on, each call is sent alone), or it was too
        large (:data:`TOO_LARGE`: its calls are sent alone, and so is any later batch as large, for a while)."""
        if answer.status in NO_BATCH_RPC or answer.status == TOO_LARGE:
            if answer.status == TOO_LARGE:
                self._too_large = min(length, self._too_large or length)
            else:
                self.batches = False
            if answer.will_close:
                self._drop()
            return []
        if answer.status >= 400:
            return [answer]
        try:
            entries = json.loads(answer.body)
        except ValueError:
            entries = None
        if not isinstance(entries, list) or len(entries) != count or not all(isinstance(e, dict) for e in entries):
            raise http.client.HTTPException(f"luigid answered {count} calls of a batch with {answer.body[:200]!r}")
        answers = [
            _Answer(200, "OK", False, b"", entry)
            if "response" in entry
            else _Answer(int(entry.get("status", 500)), str(entry.get("reason", "")), False, b"")
            for entry in entries
        ]
        answers[-1].will_close = answer.will_close
        return answers

    def _write(self, conn: http.client.HTTPConnection, unread: _Unread) -> None:
        """Write the calls of ``unread`` not yet written on ``conn`` (on an upgraded one, each a frame of its own)."""
        if unread.sent < len(unread.calls):
            if self._framed(conn):
                requests = (_frame(_framed_call(path, form)) for path, form, _ in unread.calls[unread.sent :])
            else:
                requests = (self._request(path, form_body(form)) for path, form, _ in unread.calls[unread.sent :])
            _sent(conn.sock, b"".join(requests))
            unread.sent = len(unread.calls)

    def _connect(self, conn: http.client.HTTPConnection) -> None:
        """Connect ``conn``, and ask luigid to switch it to :data:`FRAMED` (:data:`UPGRADE_RPC`) while
        :attr:`frames`: any answer but ``101`` leaves this scheduler's calls on HTTP from then on (on this connection
        if luigid keeps it open, else on a new one)."""
        conn.connect()
        self._local.framed = None
        if not self.frames:
            return
        lines = [f"GET {self.base_path}{RPC_PATH}{UPGRADE_RPC} HTTP/1.1", f"Host: {self._host_header()}"]
        lines += ["Connection: Upgrade", f"Upgrade: {FRAMED}"]
        lines += [f"{name}: {value}" for name, value in self._headers.items()]
        try:
            conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            answer = _read_answers(conn.sock, 1)[0]
        except ERRORS:  # a server or proxy that closes on it: HTTP from now on, on a new connection
            answer = _Answer(0, "", True, b"")
        if answer.status == 101:
            self._local.framed = conn
            _bounded_in_the_kernel(conn.sock, self.timeout)
            return
        self.frames = False
        if answer.will_close:
            conn.close()
            conn.connect()

    def _framed(self, conn: http.client.HTTPConnection) -> bool:
        """Whether ``conn`` was switched to :data:`FRAMED`."""
        return getattr(self._local, "framed", None) is conn

    def _host_header(self) -> str:
        return self._host if self._port is None else f"{self._host}:{self._port}"

    def _request(self, path: str, body: bytes, content_type: str = FORM) -> bytes:
        """One POST as ``http.client`` sends it."""
        lines = [f"POST {self.base_path}{path} HTTP/1.1", f"Host: {self._host_header()}", "Accept-Encoding: identity"]
        lines.append(f"Content-Type: {content_type}")
        lines += [f"{name}: {value}" for name, value in self._headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def close(self) -> None:
        self._drop()

    def settle(self) -> None:
        """A run ends and this process keeps its connection for the next (:func:`kept`): what this thread sent ahead
        and did not read is forgotten, never sent nor read in the next run; the connection it went on, out of step
        with it, is dropped (kept otherwise)."""
        unread: _Unread | None = getattr(self._local, "unread", None)
        if unread is None or unread.pid != forks.pid():
            return
        if unread.calls:
            self._drop()
        self._local.unread = None


#: the head of a batch entry (``[<the method's name in JSON>,``) by the RPC's path, made once per path
_ENTRY_HEADS: dict[str, str] = {}
#: most heads :data:`_ENTRY_HEADS` keeps (forgotten all at once past it): luigi's RPC methods are ~30
ENTRY_HEADS_KEPT = 256


def _batch_entry(path: str, form: dict[str, str]) -> str | None:
    """A call's entry in a batch (``[method, arguments]``), if it is an RPC as luigi's client posts it. The method's
    name is written in JSON once per path: ``json.dumps`` of it was ~4% of the Python of an attempt's luigid calls
    (four a trivial run)."""
    if form.keys() != {"data"}:
        return None
    head = _ENTRY_HEADS.get(path)
    if head is None:
        if not path.startswith(RPC_PATH):
            return None
        if len(_ENTRY_HEADS) >= ENTRY_HEADS_KEPT:
            _ENTRY_HEADS.clear()
        head = _ENTRY_HEADS[path] = f"[{json.dumps(path[len(RPC_PATH) :])},"
    return f"{head}{form['data']}]"


def _framed_call(path: str, form: dict[str, str]) -> bytes:
    """A call alone as a frame's body: a batch of one (only RPCs as luigi's client posts them go on a connection)."""
    entry = _batch_entry(path, form)
    if entry is None:
        raise http.client.HTTPException(f"not an RPC that goes on an upgraded connection: {path}")
    return f"[{entry}]".encode()


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(FRAME_HEAD, "big") + body


def _bounded_in_the_kernel(sock: socket.socket, timeout: float | None) -> None:
    """``sock`` (an upgraded connection) blocking, each of its ``send`` and ``recv`` bounded by ``timeout`` seconds
    by the kernel (``SO_SNDTIMEO``, ``SO_RCVTIMEO``), not by Python: a socket with a Python timeout asks ``poll``
    before each of them, two system calls more a call to luigid (four a trivial run, two on its way to ``run()``).
    A call that finds its bound passed raises :class:`TimeoutError`, as before (:func:`_sent`, :func:`_read_frames`).
    No bound (``None``) blocks, as Python's; a zero one (a non-blocking socket), and a TLS socket, stay Python's."""
    if (timeout is not None and timeout <= 0) or type(sock) is not socket.socket:  # TLS's reads fail otherwise
        return
    sock.settimeout(None)
    if timeout is not None:
        micros = max(1, round(timeout * 1_000_000))
        bound = struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)  # a struct timeval
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)


def _sent(sock: socket.socket, data: bytes) -> None:
    """``sock.sendall(data)``; the kernel's bound passed (:func:`_bounded_in_the_kernel`) raises TimeoutError."""
    try:
        sock.sendall(data)
    except BlockingIOError as exc:
        raise TimeoutError("timed out") from exc


def _read_frames(sock: socket.socket, count: int) -> list[_Answer]:
    """``count`` frames read in turn from an upgraded ``sock``, each as a batch's answer; raises as
    :func:`_read_answers` does when luigid closes the connection before or within one, TimeoutError when its bound
    passed (:func:`_bounded_in_the_kernel`). Read with ``recv`` itself, as few as they arrive in (one, most often),
    without a file object made over the socket for each call."""
    answers = []
    held = bytearray()
    for _ in range(count):
        head = _received(sock, held, FRAME_HEAD)
        if not head:
            raise http.client.RemoteDisconnected("luigid closed the connection without an answer")
        if len(head) < FRAME_HEAD:
            raise http.client.IncompleteRead(head, FRAME_HEAD - len(head))
        length = int.from_bytes(head, "big")
        body = _received(sock, held, length)
        if len(body) < length:
            raise http.client.IncompleteRead(body, length - len(body))
        answers.append(_Answer(200, "OK", False, body))
    return answers


def _received(sock: socket.socket, held: bytearray, length: int) -> bytes:
    """The next ``length`` bytes of ``sock`` (those ``held``, read past the last frame, first), fewer if it closes."""
    while len(held) < length:
        try:
            got = sock.recv(max(_RECEIVE, length - len(held)))
        except BlockingIOError as exc:
            raise TimeoutError("timed out") from exc
        if not got:
            break
        held += got
    taken = bytes(held[:length])
    del held[:length]
    return taken


@dataclass
class _Unread:
    """A thread's calls sent ahead whose answers are unread, in order (path, form, and a tag if asked for: its
    answer is then kept, by tag); the first ``sent`` are written on its connection."""

    pid: int
    calls: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    sent: int = 0
    asked: int = 0
    kept: dict[int, Content] = field(default_factory=dict)
    #: what to run once the thread's next request is written (:meth:`Connections.meanwhile`)
    meanwhile: list[Callable[[], object]] = field(default_factory=list)


@dataclass
class _Answer:
    status: int
    reason: str
    will_close: bool
    body: bytes
    #: the call's entry in a batch's answer, decoded (its body then left empty): luigi reads its ``response``
    entry: dict[str, Any] | None = None


#: a call's answer as :class:`Connections` gives it: its body, or its entry in a batch's answer, decoded
Content = bytes | dict[str, Any]


def response_of(content: Content) -> Any:
    """luigid's ``response`` to a call, as luigi's client reads it from the answer's JSON body."""
    entry = json.loads(content) if isinstance(content, bytes) else content
    return entry["response"]


def _body(content: Content) -> bytes:
    """A call's answer as the body luigid would have answered it alone with."""
    return content if isinstance(content, bytes) else json.dumps(content).encode()


#: longest status or header line read from luigid (http.client's own bound)
_MAX_LINE = 65536


def _read_answers(sock: socket.socket, count: int) -> list[_Answer]:
    """Up to ``count`` HTTP answers read in turn from ``sock``: fewer if one says the server closes the connection
    (it reads no request after). Read as ``http.client`` reads one, without its parse of every header into a
    message object (about ten times the cost of the rest of the answer): only the status, ``Content-Length``,
    ``Transfer-Encoding`` and ``Connection`` matter here. Raises ``http.client.RemoteDisconnected`` when the
    server closed the connection before an answer began, another ``http.client.HTTPException`` for what is no
    HTTP answer."""
    reader = sock.makefile("rb")
    try:
        answers: list[_Answer] = []
        while len(answers) < count and not (answers and answers[-1].will_close):
            answers.append(_read_answer(reader))
        return answers
    except ValueError as exc:  # a length that is no number
        raise http.client.HTTPException(f"not an HTTP answer: {exc}") from exc
    finally:
        reader.close()


def _read_answer(reader: BinaryIO) -> _Answer:
    line = reader.readline(_MAX_LINE + 1)
    if not line:
        raise http.client.RemoteDisconnected("luigid closed the connection without an answer")
    version, _, rest = line.decode("iso-8859-1").strip().partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit() or len(line) > _MAX_LINE:
        raise http.client.BadStatusLine(line.decode("iso-8859-1", "replace"))
    informational = code.startswith("1")  # a 101: no body, what follows is the protocol switched to
    length, chunked, connection = None, False, ""
    while (header := reader.readline(_MAX_LINE + 1)) not in (b"\r\n", b"\n", b""):
        if len(header) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
            if length < 0:
                raise ValueError(f"a negative Content-Length: {length}")
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            connection = value.decode("iso-8859-1").strip().lower()
    will_close = "close" in connection if version == "HTTP/1.1" else "keep-alive" not in connection
    if informational:
        body, will_close = b"", False
    elif chunked:
        body = _read_chunks(reader)
    elif length is not None:
        body = _read_exactly(reader, length)
    else:  # no length: the answer ends with the connection
        body, will_close = reader.read(), True
    return _Answer(int(code), reason.strip(), will_close, body)


def _read_exactly(reader: BinaryIO, length: int) -> bytes:
    body = reader.read(length)
    if len(body) < length:
        raise http.client.IncompleteRead(body, length - len(body))
    return body


def _read_chunks(reader: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    while size := int(_read_line(reader, chunks).split(b";")[0].strip() or b"0", 16):
        chunks.append(_read_exactly(reader, size))
        _read_line(reader, chunks)  # the chunk's CRLF
    while _read_line(reader, chunks) not in (b"\r\n", b"\n"):  # trailers, up to the blank line
        pass
    return b"".join(chunks)


def _read_line(reader: BinaryIO, chunks: list[bytes]) -> bytes:
    """A line of a chunked body; the connection's end before its last chunk is an incomplete answer."""
    line = reader.readline(_MAX_LINE + 1)
    if not line:
        raise http.client.IncompleteRead(b"".join(chunks))
    return line


class LuigidRPC(RemoteScheduler):
    """luigi's scheduler client over :class:`Connections`; luigi's retry loop only once a call has failed.

    luigi's ``add_task`` and ``add_worker`` (whose answers its worker never reads) are held, and sent with the next
    call in one request (:data:`BATCH_RPC`): a build of one step asks luigid twice, [add_task PENDING, add_worker,
    get_work] then [add_task DONE]. To a luigid without that RPC (luigi's own), they are sent at once, their answers
    read with the next call: luigid adds the steps while the worker looks for more.
    """

    raises = ERRORS
    held_back = frozenset({"/api/add_task", "/api/add_worker"})

    def __init__(self, url: str, connect_timeout: float | None = None, secret: str | None = None) -> None:
        super().__init__(url, connect_timeout)
        self.secret = secret
        self.connections = Connections(self.url, self.connect_timeout, secret, batches=True)
        self.post = self.connections.call
        self.send = self.connections.send
        self.flush = self.connections.flush
        self.meanwhile = self.connections.meanwhile

    def __reduce__(self) -> tuple[type[LuigidRPC], tuple[str, float, str | None]]:
        """A client to the same luigid, without this one's connections: as luigi's own pickles (its worker puts a
        luigid message for an ``accepts_messages`` task, which answers through the client, on the task's queue)."""
        return type(self), (self.url, self.connect_timeout, self.secret)

    @property
    def batches(self) -> bool:
        return self.connections.batches

    def close(self) -> None:
        self.connections.close()

    def settle(self) -> None:
        """What a run of this process sent ahead and did not read is forgotten (:meth:`Connections.settle`)."""
        self.connections.settle()


def _told(task_id: str, status: str, worker: str, expl: str, policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an ``add_task`` tells luigid of a step the service ends (``status``, not runnable, ``expl`` why), with the
    step's retry policy where the caller has it (:meth:`SchedulerClient.fail`)."""
    told: dict[str, Any] = {"task_id": task_id, "status": status, "worker": worker, "expl": expl, "runnable": False}
    if policy is not None:
        told["retry_policy_dict"] = dict(policy)
    return told


#: how :meth:`SchedulerClient.hold` begins where a step needs more of a ``[resources]`` pool than the pool holds
BEYOND_POOL = "more than its pool holds"


class SchedulerClient:
    """Talks to a luigi central scheduler at ``url`` (e.g. ``http://localhost:8082``)."""

    def __init__(self, url: str, timeout: float = 2.0, secret: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        #: its keep-alive connections, one per thread
        self.connections = Connections(self.url, timeout, secret)
        self._disabled_asked: dict[str, Callable[[], Any]] = {}

    def call(self, method: str, **data: Any) -> Any:
        return self._answer(method, lambda: self.connections.call(f"/api/{method}", {"data": json.dumps(data)}))

    def ask(self, method: str, **data: Any) -> Callable[[], Any]:
        """:meth:`call` ``method`` now; what this answers reads its answer when called, on this thread (luigid works
        on it meanwhile)."""
        try:
            answer = self.connections.ask(f"/api/{method}", {"data": json.dumps(data)})
        except ERRORS:  # reading what was sent ahead before failed: this one is made when its answer is read
            return lambda: self.call(method, **data)
        return lambda: self._answer(method, answer)

    def _answer(self, method: str, read: Callable[[], Content]) -> Any:
        try:
            return response_of(read())
        except (*ERRORS, ValueError, KeyError, TypeError) as exc:
            raise SchedulerUnavailable(f"luigi scheduler at {self.url}: {method} failed: {exc}") from exc

    def check(self) -> str:
        """What answers; raises :class:`SchedulerPaused` if luigid is paused (it grants nothing)."""
        if (self.call("is_paused") or {}).get("paused"):
            raise SchedulerPaused(f"luigid {self.url} is paused: it grants no task until it is unpaused")
        return f"luigid {self.url}"

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The scheduler's record of one task (status, workers, deps), or None if unknown."""
        graph = self.call("dep_graph", task_id=task_id, include_done=True) or {}
        found = graph.get(task_id)
        return found if isinstance(found, dict) else None

    def fail(
        self, task_id: str, worker: str, expl: str, counted: bool = True, policy: Mapping[str, Any] | None = None
    ) -> None:
        """Mark a task FAILED with ``expl``, as ``worker`` (luigid takes it from the worker running it, if any).

        ``counted=False``: the task was interrupted, no failure of its own (its run cancelled, or requeued as its
        worker stopped): luigid, ours, counts it not toward the task's ``retry_count``
        (:data:`~nectar.luigi_internals.UNCOUNTED`; a luigid without our patch ignores the argument, and counts). A
        failure that counts is named (:func:`~nectar.luigi_internals.failure_named`): sent again after its answer was
        lost, it is counted once.

        ``policy``: the task's retry policy, as luigi's worker sends it (``retry_policy_dict``,
        :func:`~nectar.luigi_internals.retry_policy_of`), where the caller has the task. luigi's own luigid sets a
        task's policy from every ``add_task``, to its ``[scheduler]`` defaults where none is sent, and judges every
        later failure by it until a worker adds the task again; ours keeps the one it holds."""
        told = _told(task_id, "FAILED", worker, expl, policy)
        self.call("add_task", **failure_named(told if counted else {**told, UNCOUNTED: True}))

    def disable(self, task_id: str, worker: str, expl: str, policy: Mapping[str, Any] | None = None) -> None:
        """Mark a task DISABLED with ``expl``: luigid keeps it so (no retry delay) until it is submitted again.

        luigid does not disable a RUNNING task: one it has RUNNING in ``worker``'s name is ended FAILED first, a
        failure not counted (``fail(counted=False)``: a cancel is no failure). Any other (a step that never ran, or
        one its worker already ended) is sent DISABLED alone: a FAILED would be a failure a luigid without our patch
        counts, and notes in its history, of a step that never ran (and one RUNNING in another worker's name luigid
        keeps running, whatever it is told of it by this one). ``policy``: the task's retry policy, as :meth:`fail`
        sends it."""
        graph = self.call("dep_graph", task_id=task_id, include_done=False) or {}  # not the DONE steps it needs
        held = graph.get(task_id)
        if isinstance(held, dict) and held.get("status") == "RUNNING" and held.get("worker_running") == worker:
            self.fail(task_id, worker, expl, counted=False, policy=policy)
        self.call("add_task", **_told(task_id, "DISABLED", worker, expl, policy))

    def ask_disabled(self, task_id: str) -> None:
        """Ask luigid now what :meth:`disabled` answers for ``task_id``: the next :meth:`disabled` of it on this
        thread reads that answer (luigid works on it meanwhile)."""
        self._disabled_asked[task_id] = self.ask("dep_graph", task_id=task_id, **DISABLED_QUESTION)

    def none_disabled(self, task_id: str) -> None:
        """The next :meth:`disabled` of ``task_id`` on this thread answers none without asking luigid: the caller
        knows luigid held no DISABLED task a moment ago (a step met disabled since is learnt as the build ends)."""
        self._disabled_asked[task_id] = dict

    def disabled(self, task_id: str) -> dict[str, dict[str, Any]]:
        """The tasks of ``task_id``'s graph that luigid disabled itself (too many failures), by task id, each
        with its record: luigid holds them until ``disable_persist`` runs out or they are re-enabled."""
        asked = self._disabled_asked.pop(task_id, None)
        graph = (asked() if asked else self.call("dep_graph", task_id=task_id, **DISABLED_QUESTION)) or {}
        return {
            tid: record
            for tid, record in graph.items()
            if isinstance(record, dict) and record.get("status") == "DISABLED" and record.get("re_enable_able")
        }

    def settle(self) -> None:
        """A run ends, this client kept for the next (:func:`kept`): what it asked ahead and did not read is
        forgotten (:meth:`Connections.settle`)."""
        self._disabled_asked.clear()
        self.connections.settle()

    def re_enable(self, task_id: str) -> None:
        """Lift luigid's own disable of a task (luigi's ``re_enable_task``: its failures are forgotten)."""
        self.call("re_enable_task", task_id=task_id)

    def hold(self, task_id: str) -> str | None:
        """Why luigid may not grant ``task_id`` (or a task it needs) to a worker: paused, or short of a
        resource a step needs; None when it tells nothing of the kind."""
        if (self.call("is_paused") or {}).get("paused"):
            return "luigid is paused"
        graph = self.call("dep_graph", task_id=task_id, include_done=False) or {}
        needed: dict[str, int] = {}
        for record in graph.values():
            if isinstance(record, dict) and record.get("status") == "PENDING":
                for name, amount in (record.get("resources") or {}).items():
                    needed[name] = max(needed.get(name, 0), int(amount))
        pools = {item.get("name"): item for item in self.call("resource_list") or [] if isinstance(item, dict)}
        if needed.keys() - pools.keys():  # a pool luigi.cfg does not list: luigid lists none of its use, counted here
            pools.update(self._unlisted_use(needed.keys() - pools.keys()))
        short, beyond = [], []
        for name, amount in sorted(needed.items()):
            pool = pools.get(name, {})  # a pool luigid's configuration does not list holds one slot
            used, total = int(pool.get("num_used", 0)), int(pool.get("num_total", 1))
            if amount > total:
                beyond.append(f"{name} (a step needs {amount}; the pool holds {total})")
            elif used + amount > total:
                short.append(f"{name} (a step needs {amount}; {used} of {total} in use)")
        if beyond:  # no wait grants it: luigid's pools are its luigi.cfg's as it started (update_resource is refused
            # to any other process: nectar.guard)
            return f"{BEYOND_POOL}: {', '.join(beyond)}: raise it in luigi.cfg's [resources] and restart luigid"
        return f"short of resources: {', '.join(short)}" if short else None

    def _unlisted_use(self, names: Iterable[str]) -> dict[str, dict[str, int]]:
        """The use of each pool of ``names`` that luigid's configuration does not list (it holds one slot): what its
        running tasks take of it, as luigid counts them (``resources_running``, else ``resources``)."""
        used = dict.fromkeys(names, 0)
        running = self.call("task_list", status="RUNNING", upstream_status="", limit=False) or {}
        for record in running.values() if isinstance(running, dict) else ():
            taken = (
                (record.get("resources_running") or record.get("resources") or {}) if isinstance(record, dict) else {}
            )
            for name, amount in taken.items():
                if name in used:
                    used[name] += int(amount)
        return {name: {"num_used": amount, "num_total": 1} for name, amount in used.items()}

    def task_url(self, task_id: str, base: str | None = None) -> str:
        """The task in luigid's visualiser, at ``base`` (where browsers reach it: ``NECTAR_SCHEDULER_PUBLIC_URL``),
        else at the URL this client calls. A task id that ``quote`` would leave as it is (a status lookup's, most
        often: names, digits, '_' and a hex hash) goes in without it: ``quote`` is Python, ~7k instructions a call."""
        quoted = task_id if _UNQUOTED.fullmatch(task_id) else quote(task_id)
        return f"{base or self.url}/static/visualiser/index.html#tab=graph&taskId={quoted}"


#: a text ``urllib.parse.quote`` leaves as it is: its default ``safe`` ('/') and the characters it never quotes
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")


def scheduler_of(settings: Settings) -> SchedulerClient | None:
    """The client of the luigid ``settings`` name, built here only; None without one (a local scheduler)."""
    url = settings.scheduler_url
    return SchedulerClient(url, settings.scheduler_timeout, scheduler_secret(settings)) if url else None


_Client = TypeVar("_Client", LuigidRPC, SchedulerClient)
#: this process's clients of luigid kept from one run to the next (:func:`kept`), by kind and what they were made of
_KEPT: dict[tuple[Any, ...], Any] = {}


def kept(kind: type[_Client], *args: Any) -> _Client:
    """This process's ``kind(*args)`` (:class:`LuigidRPC`, :class:`SchedulerClient`), made once and kept: a process
    that takes run after run (:mod:`nectar.reuse`) keeps its connections to luigid, instead of a connect (and
    luigid's accept) per client and run. Each run ends with its ``settle()``: nothing it left unread reaches the next;
    a connection luigid closed meanwhile (restarted) is made again by the next call (:meth:`Connections.post_many`).
    A forked child makes its own connections (:class:`Connections`)."""
    key = (kind, *args)
    client = _KEPT.get(key)
    if client is None:
        client = _KEPT[key] = kind(*args)
    return cast(_Client, client)


def kept_scheduler(settings: Settings) -> SchedulerClient | None:
    """:func:`scheduler_of`'s client, kept (:func:`kept`)."""
    url = settings.scheduler_url
    return kept(SchedulerClient, url, settings.scheduler_timeout, scheduler_secret(settings)) if url else None
