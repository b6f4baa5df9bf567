"""Who answers in the API's gunicorn worker (:class:`nectar.gunicorn_ext.ReadTimeoutWorker`): its threads wait for
ready sockets themselves, and a request that waits holds its own thread and no other connection's answer.

A request is held inside the app (:mod:`tests.helpers.held_app`) until the test lets it go; what the tests ask of
the worker meanwhile fails with a worker whose loop answers the requests it sees ready itself (no thread of its own
for each request): another connection's request, a slow client's, a stop's. A worker whose threads each keep a
connection fails the one about idle kept-alive connections."""

from __future__ import annotations

import http.client
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import gunicorn.config
import gunicorn.http.message
import pytest

from harness import Processes, alive, base_env, children, connected_to, settings_env, waitfor
from nectar import gunicorn_ext
from nectar.config import Settings
from nectar.gunicorn_ext import settings_read_once
from tests.helpers.held_app import APP, HELD_APP_DIR, entered, hold, release

#: how long a test waits for what must happen: it only fails a hung test, it bounds nothing
PATIENCE = 60.0


class Api:
    def __init__(self, port: int, pid: int, folder: Path) -> None:
        self.port, self.pid, self.folder = port, pid, folder

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)

    def hold(self, name: str) -> http.client.HTTPConnection:
        """A connection whose ``GET /hold/<name>`` is inside the app (its answer not read)."""
        hold(self.folder, name)
        connection = self.connect()
        connection.request("GET", f"/hold/{name}")
        waitfor(lambda: entered(self.folder, name), PATIENCE, f"the request {name} inside the app")
        return connection

    def worker(self) -> int:
        return waitfor(lambda: next(iter(children(self.pid)), None), PATIENCE, "the API's worker")


def answer(connection: http.client.HTTPConnection) -> tuple[int, str, str]:
    reply = connection.getresponse()
    return reply.status, reply.read().decode(), reply.getheader("Connection", "")


def get(connection: http.client.HTTPConnection, path: str = "/hello") -> tuple[int, str]:
    connection.request("GET", path)
    return answer(connection)[:2]


def start(settings: Settings, processes: Processes, folder: Path, threads: int, **env: str) -> Api:
    folder.mkdir()
    environ = base_env() | settings_env(settings) | {HELD_APP_DIR: str(folder), **env}
    served = processes.api(None, environ, app=APP, workers=1, threads=threads)
    return Api(served.port, served.proc.pid, folder)


@pytest.fixture
def api(settings: Settings, processes: Processes, tmp_path: Path) -> Iterator[Api]:
    """One worker of two threads, a read deadline far off."""
    yield start(settings, processes, tmp_path / "held", threads=2, NECTAR_READ_TIMEOUT="600")


def test_a_held_request_holds_up_no_other_connections_answer(api: Api) -> None:
    kept = api.connect()
    assert get(kept)[0] == 200  # a kept-alive connection, idle while the request below is held
    held = api.hold("a")
    other = api.connect()
    try:
        assert get(other) == (200, "hello")  # a new connection's request
        assert get(kept) == (200, "hello")  # and the kept-alive one's next
        assert get(other) == (200, "hello")
        release(api.folder, "a")
        assert answer(held)[:2] == (200, "released a")
    finally:
        for connection in (kept, held, other):
            connection.close()


def test_a_slow_client_within_its_deadline_holds_up_no_other_connections_answer(api: Api) -> None:
    slow = socket.create_connection(("127.0.0.1", api.port), timeout=PATIENCE)
    other = api.connect()
    try:
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # its headers go on: a thread reads on
        assert get(other) == (200, "hello")
        assert get(other) == (200, "hello")
        slow.sendall(b"Connection: close\r\n\r\n")  # the rest, well within its read deadline
        with slow.makefile("rb") as reply:
            assert reply.readline().split()[1] == b"200"
    finally:
        slow.close()
        other.close()


def test_idle_kept_alive_connections_hold_no_thread(settings: Settings, processes: Processes, tmp_path: Path) -> None:
    """One thread; connections kept alive after an answer leave it free for a new connection, and each is answered
    again after."""
    one = start(settings, processes, tmp_path / "held", threads=1)
    idle = [one.connect() for _ in range(3)]
    other = one.connect()
    try:
        for connection in idle:
            assert get(connection) == (200, "hello")
        assert get(other) == (200, "hello")
        for connection in idle:
            assert get(connection) == (200, "hello")
    finally:
        for connection in (*idle, other):
            connection.close()


def test_a_stopping_worker_answers_each_held_request_as_it_is_released(api: Api) -> None:
    """Stopped (SIGTERM) while its two threads each hold a request, the worker closes its idle kept-alive connection,
    answers each held request once released (the second before the first is), then exits."""
    worker = api.worker()
    kept = api.connect()
    assert get(kept)[0] == 200
    first = api.hold("first")
    second = api.hold("second")
    try:
        os.kill(worker, signal.SIGTERM)
        assert kept.sock is not None
        assert kept.sock.recv(1) == b""  # closed by the stopping worker (within gunicorn's keep-alive linger)
        release(api.folder, "second")
        assert answer(second)[:2] == (200, "released second")
        assert alive(worker)
        release(api.folder, "first")
        assert answer(first)[:2] == (200, "released first")
        waitfor(lambda: not alive(worker), PATIENCE, f"the stopped worker {worker} to exit")
    finally:
        for connection in (kept, first, second):
            connection.close()


def test_a_connection_accepted_before_its_request_holds_no_thread(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """One thread; a connection the kernel hands over before its client sent anything (it defers the accept for a
    second, then gives up) waits for its request without the thread: another connection is answered meanwhile, then
    the silent one once it speaks."""
    one = start(settings, processes, tmp_path / "held", threads=1)
    worker = one.worker()
    silent = socket.create_connection(("127.0.0.1", one.port), timeout=PATIENCE)
    other = one.connect()
    try:
        port = silent.getsockname()[1]
        waitfor(lambda: connected_to(worker, port), PATIENCE, "the silent connection accepted by the worker")
        assert get(other) == (200, "hello")
        silent.sendall(b"GET /late HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        with silent.makefile("rb") as reply:
            assert reply.readline().split()[1] == b"200"
    finally:
        silent.close()
        other.close()


def test_a_kept_alive_connection_past_its_timeout_is_closed_and_its_descriptor_freed(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """gunicorn's keep-alive timeout (the Retry-After and 5 s) shuts an idle connection down in the worker's main
    thread; the thread that sees the event this makes closes it: the worker holds it no more."""
    one = start(settings.replace(retry_after=1), processes, tmp_path / "held", threads=1)
    worker = one.worker()
    idle = one.connect()
    try:
        assert get(idle) == (200, "hello")
        assert idle.sock is not None
        port = idle.sock.getsockname()[1]
        assert idle.sock.recv(1) == b""  # shut down by the worker once its timeout passed
        waitfor(lambda: not connected_to(worker, port), PATIENCE, "the worker to close the connection")
        assert alive(worker)
    finally:
        idle.close()


@pytest.mark.parametrize("stopped", [False, True], ids=["serving", "stopped-meanwhile"])
def test_a_kept_alive_clients_request_sent_while_every_thread_is_held_is_answered_once_one_is_free(
    settings: Settings, processes: Processes, tmp_path: Path, stopped: bool
) -> None:
    """review9's (round 55). ``first`` then ``idle`` are answered and kept alive, in that order; a request then holds
    the worker's one thread, and ``first`` sends its next request. ``idle`` says nothing: the worker closes it at its
    keep-alive timeout (5 s: ``NECTAR_RETRY_AFTER`` 0 + 5), after ``first``'s came. ``first``'s request is answered
    once the held one is let go, as gthread's loop queued it for the next free thread: a connection whose client has
    sent is no idle one, whatever its timeout says (shut down at it, the client read ``RemoteDisconnected``: for a
    POST, a request it does not send again). ``stopped``: the worker is stopped (SIGTERM, as a recycle after
    ``max_requests`` stops it) once the request was sent; the stop closes idle kept-alive connections after
    ``STOP_KEEPALIVE_LINGER`` (2 s), and answers this one within ``graceful_timeout`` all the same."""
    one = start(settings.replace(retry_after=0), processes, tmp_path / "held", threads=1)
    first, idle = one.connect(), one.connect()
    held = None
    try:
        assert get(first) == (200, "hello") and get(idle) == (200, "hello")
        held = one.hold("a")
        first.request("GET", "/again")  # well within its keep-alive timeout (5 s from its answer)
        if stopped:
            os.kill(one.worker(), signal.SIGTERM)
        assert idle.sock is not None
        idle.sock.settimeout(PATIENCE)
        # the worker's keep-alive bookkeeping has passed first's timeout: idle, answered after it, is closed
        assert idle.sock.recv(1) == b"", "the idle kept-alive connection was not closed at its timeout"
        release(one.folder, "a")
        assert answer(held)[:2] == (200, "released a")
        assert answer(first)[:2] == (200, "again")
    finally:
        for opened in (first, idle, held):
            if opened is not None:
                opened.close()


def test_a_thread_that_cannot_be_started_leaves_the_worker_answering(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """Two threads; the second cannot be started (``RuntimeError: can't start new thread``: the process's limit of
    threads, or memory). The first, woken for a new connection, asks for it as it takes the listener's event, and
    answers all the same, each connection after too. The failed start ended its life before, with the listener taken
    and never armed again: the worker answered nothing more, alive and beating for its master."""
    api = start(settings, processes, tmp_path / "held", threads=2, HELD_APP_NO_THREAD="answer-2")
    for _ in range(3):
        connection = api.connect()
        try:
            assert get(connection) == (200, "hello")
        finally:
            connection.close()
    assert "could not start an answering thread" in "".join(p.read_text() for p in processes.logs.glob("*"))


def test_a_workers_settings_are_read_once_and_again_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reads gunicorn's settings once (``settings_read_once``): a read finds the value without gunicorn's
    ``Config.__getattr__``, a setting set afterwards reads its new value, and what gunicorn's ``Config`` defines itself
    (its properties) is still its own."""
    cfg = gunicorn.config.Config()
    cfg.set("keepalive", 5)
    cfg.set("bind", ["127.0.0.1:8000"])  # read, never bound
    settings_read_once(cfg)
    asked: list[str] = []
    getattr_of_config = gunicorn.config.Config.__getattr__

    def noted(self: gunicorn.config.Config, name: str) -> object:
        asked.append(name)
        return getattr_of_config(self, name)

    monkeypatch.setattr(gunicorn.config.Config, "__getattr__", noted)
    assert (cfg.keepalive, cfg.limit_request_line, cfg.forwarded_allow_ips) == (5, 4094, ["127.0.0.1", "::1"])
    assert asked == []
    cfg.set("keepalive", 7)
    assert (cfg.keepalive, cfg.settings["keepalive"].get()) == (7, 7)
    assert (cfg.address, bool(cfg.is_ssl)) == ([("127.0.0.1", 8000)], False)  # its properties, as gunicorn reads them
    cfg.set("bind", ["127.0.0.1:8001"])
    assert cfg.address == [("127.0.0.1", 8001)] and asked == []


def test_a_peers_check_is_made_once_per_address_and_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn's check of a request's peer against an allow list (``peers_checked_once``) is made once per address
    and list: the same networks and list answer again without gunicorn's check; other networks, or a list that
    changed, are checked again; set twice, the check is wrapped once."""
    checked: list[str] = []
    gunicorns = gunicorn.http.message._ip_in_allow_list

    def noted(ip: str, allow: list[str], networks: object) -> bool:
        checked.append(ip)
        return bool(gunicorns(ip, allow, networks))

    monkeypatch.setattr(gunicorn.http.message, "_ip_in_allow_list", noted)
    monkeypatch.setattr(gunicorn_ext, "_peers_checked", None)
    gunicorn_ext.peers_checked_once()
    gunicorn_ext.peers_checked_once()
    check = gunicorn.http.message._ip_in_allow_list
    cfg = gunicorn.config.Config()
    allow, networks = cfg.forwarded_allow_ips, cfg.forwarded_allow_networks()
    assert [check(ip, allow, networks) for ip in ("127.0.0.1", "127.0.0.1", "10.0.0.1", "10.0.0.1")] == [
        True,
        True,
        False,
        False,
    ]
    assert checked == ["127.0.0.1", "10.0.0.1"]
    other = gunicorn.config.Config()
    other.set("forwarded_allow_ips", "10.0.0.0/8")
    assert check("10.0.0.1", other.forwarded_allow_ips, other.forwarded_allow_networks()) is True
    assert check("127.0.0.1", ["*"], networks) is True  # the same networks, another list
    assert checked == ["127.0.0.1", "10.0.0.1", "10.0.0.1", "127.0.0.1"]
