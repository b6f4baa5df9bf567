"""Talking to luigid: luigi's workers and our client over kept-alive connections, against a real luigid."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import luigi
import luigi.interface
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import Processes, bound_to_a_free_port, waitfor
from nectar import build
from nectar.build import Build
from nectar.config import Settings
from nectar.errors import SchedulerUnavailable
from nectar.luigi_internals import forget_task_classes, new_worker, schedule_and_run
from nectar.luigid import (
    BATCH_RPC,
    FORM,
    Connections,
    LuigidError,
    LuigidRPC,
    SchedulerClient,
    _read_answers,
    _Unread,
    form_body,
    kept_scheduler,
)
from tests.conftest import free_port, start_luigid, stop
from tests.helpers.raw_server import RawServer
from tests.nectar.test_luigid_server import LUIGIS_LUIGID, start_one


def status_of(client: SchedulerClient, task_id: str) -> str:
    """luigid's status of ``task_id``, a task it must know."""
    found = client.task(task_id)
    assert found is not None, f"luigid knows no {task_id}"
    return str(found["status"])


def test_luigi_worker_calls_go_through_one_kept_alive_connection(luigid: str) -> None:
    rpc = LuigidRPC(luigid)
    assert rpc.add_worker("test-rpc-worker", {}) is None  # sent ahead: luigi reads luigid's null response of it
    added = rpc.add_task(worker="test-rpc-worker", task_id="RpcProbe_1", status="PENDING", family="RpcProbe")
    assert added is None
    work = rpc.get_work(worker="test-rpc-worker", host="here")
    assert work["task_id"] == "RpcProbe_1"
    assert rpc.add_task(worker="test-rpc-worker", task_id="RpcProbe_1", status="DONE") is None
    rpc.send_held()
    assert status_of(SchedulerClient(luigid), "RpcProbe_1") == "DONE"


class Spied(LuigidRPC):
    """A LuigidRPC that notes the paths of the calls of each wait for luigid: those its thread sent ahead since its
    last wait, then the call waited for (none when it only reads what was sent ahead)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.trips: list[list[str]] = []
        local = threading.local()  # as the transport's: what a thread sent ahead is read by its own next call
        post, send, flush = self.connections.post, self.connections.send, self.connections.flush

        def sent() -> list[str]:
            ahead: list[str] = getattr(local, "ahead", [])
            local.ahead = []
            return ahead

        def one(path: str, form: dict[str, str]) -> bytes:
            self.trips.append([*sent(), path])
            return post(path, form)

        def ahead(path: str, form: dict[str, str]) -> None:
            local.ahead = [*getattr(local, "ahead", []), path]
            send(path, form)

        def read() -> None:
            if calls := sent():
                self.trips.append(calls)
            flush()

        self.post, self.send, self.flush = one, ahead, read


def test_a_task_added_goes_with_the_next_call_in_one_round_trip(luigid: str) -> None:
    """luigi's add_task (its answer unread) waits for the worker's next call: luigid gets both in order, in one
    request (luigid's batch RPC); the last one held is sent by send_held."""
    rpc = Spied(luigid)
    rpc.add_task(worker="test-held", task_id="HeldProbe_1", status="PENDING", family="HeldProbe")
    work = rpc.get_work(worker="test-held", host="here")
    assert work["task_id"] == "HeldProbe_1"  # luigid had the task added before it was asked for work
    rpc.add_task(worker="test-held", task_id="HeldProbe_1", status="DONE")
    rpc.send_held()
    assert rpc.trips == [["/api/add_task", "/api/get_work"], ["/api/add_task"]]
    assert status_of(SchedulerClient(luigid), "HeldProbe_1") == "DONE"


@pytest.fixture
def luigis_luigid(tmp_path: Path) -> Iterator[str]:
    """luigi's own luigid, as ``luigid`` starts it (no router of ours: no batch RPC); its URL."""
    processes = Processes(tmp_path)
    try:
        yield start_one(processes, tmp_path, "luigis", LUIGIS_LUIGID).url
    finally:
        processes.close()


def test_to_a_luigid_without_the_batch_rpc_each_call_goes_alone_and_a_task_added_reaches_it_at_once(
    luigis_luigid: str,
) -> None:
    """luigi's own luigid answers the batch RPC 404: the calls held go one by one (pipelined), and from then on
    luigi's add_task is sent at once, not held until the worker's next call: luigid adds the step while the worker
    goes on (another client sees it before the worker calls again); its answer is read with the next call."""
    rpc = LuigidRPC(luigis_luigid)
    rpc.add_task(worker="test-ahead", task_id="AheadProbe_0", status="PENDING", family="AheadProbe")
    assert rpc.get_work(worker="test-ahead", host="here")["task_id"] == "AheadProbe_0"
    assert not rpc.batches
    rpc.add_task(worker="test-ahead", task_id="AheadProbe_1", status="PENDING", family="AheadProbe")
    client = SchedulerClient(luigis_luigid)
    record = waitfor(lambda: client.task("AheadProbe_1"), 60, "luigid to know AheadProbe_1 before the next call")
    assert record["status"] == "PENDING"
    rpc.add_task(worker="test-ahead", task_id="AheadProbe_0", status="DONE")
    assert rpc.get_work(worker="test-ahead", host="here")["task_id"] == "AheadProbe_1"


def test_a_chain_builds_against_a_luigid_without_the_batch_rpc(luigis_luigid: str, tmp_path: Path) -> None:
    """A build of two steps against luigi's own luigid: the first request, a batch, is answered 404 and its calls go
    alone; the process's later builds send no batch (remembered); luigid's view is whole: each step DONE, its worker,
    the worker's first task."""
    ran: list[str] = []

    class PlainUpstream(luigi.Task):
        n = luigi.IntParameter()

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget(tmp_path / f"{self.task_id}.txt")

        def run(self) -> None:
            ran.append(self.task_id)
            self.output().makedirs()
            Path(self.output().path).touch()

    class PlainDownstream(PlainUpstream):
        def requires(self) -> PlainUpstream:
            return PlainUpstream(n=self.n)

    requests: list[list[str]] = []
    try:
        for n in (1, 2):
            made = Build(luigis_luigid, f"plain-build:{n}")
            assert isinstance(made.scheduler, LuigidRPC)
            noted(made.scheduler.connections, requests)
            try:
                made.run(PlainDownstream(n=n))
            finally:
                del made.scheduler.connections._request
    finally:
        forget_task_classes(__name__)
    assert len(ran) == 4
    assert requests[0] == ["add_task", "add_task", "add_worker", "get_work"]  # the batch luigid answered 404
    assert ["add_task", "add_task", "add_worker", "get_work"] not in requests[1:]  # never a batch again
    client = SchedulerClient(luigis_luigid)
    workers = {info["name"]: info for info in client.call("worker_list")}
    for n, first in ((1, 0), (2, 2)):
        for task_id in ran[first : first + 2]:
            record = client.task(task_id) or {}
            assert (record["status"], record["workers"]) == ("DONE", [f"nectar-plain-build:{n}"])
        assert workers[f"nectar-plain-build:{n}"]["first_task"] == ran[first + 1]  # the downstream, added first


def noted(connections: Connections, requests: list[list[str]]) -> None:
    """Note in ``requests`` each request ``connections`` writes to luigid: the methods of its calls (a batch's, in
    turn), until ``del connections._request``."""
    request = connections._request

    def noting(path: str, body: bytes, content_type: str = FORM) -> bytes:
        if path == f"/api/{BATCH_RPC}":
            requests.append([method for method, _ in json.loads(body)])
        else:
            requests.append([path.removeprefix("/api/")])
        return request(path, body, content_type)

    vars(connections)["_request"] = noting  # this object's own, before its class's


def test_a_call_asked_ahead_is_answered_in_turn_and_read_when_wanted(luigid: str) -> None:
    """An attempt asks luigid which steps it disabled before its chain compiles, and reads the answer after, on its
    own thread: the answer is luigid's at the time of the call, kept while later calls are made and read."""
    client = SchedulerClient(luigid)
    graph = client.ask("dep_graph", task_id="AskedProbe_1", include_done=True)
    client.call("add_task", task_id="AskedProbe_1", status="PENDING", worker="test-asked", family="AskedProbe")
    assert graph() == {}  # asked before the task was added: luigid answered in turn
    assert status_of(client, "AskedProbe_1") == "PENDING"
    client.disable("AskedProbe_1", "test-asked", "asked")
    client.ask_disabled("AskedProbe_1")
    client.check()
    assert list(client.disabled("AskedProbe_1")) == []  # DISABLED by a client, not by luigid: nothing to lift


def test_a_call_sent_ahead_on_a_connection_luigid_closed_is_sent_again(tmp_path: Path) -> None:
    """luigid restarted after a call was sent ahead, its answer unread: the next call sends it again on a new
    connection, before its own, and the new luigid has both."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_luigid(port, tmp_path)
    rpc = LuigidRPC(url)
    try:
        rpc.add_task(worker="w", task_id="Ahead_1", status="PENDING")
        stop(proc)
        proc = start_luigid(port, tmp_path / "again")
        rpc.add_task(worker="w", task_id="Ahead_2", status="PENDING")
        rpc.send_held()
        client = SchedulerClient(url)
        assert client.task("Ahead_1") is not None and client.task("Ahead_2") is not None
    finally:
        stop(proc)


def test_a_build_asks_luigid_once_per_step_begun_and_once_per_step_ended(luigid: str) -> None:
    """A worker's build of one step: [add_task, add_worker, get_work] (added, the worker described, asked for: the
    step runs), then [add_task DONE] (ended: every step it scheduled is DONE, so luigid has nothing more to grant it,
    and is not asked): two round trips on the worker's thread, not four; luigid says DONE, and its workers view shows
    the worker's first task."""
    ran: list[str] = []

    class HeldBuildProbe(luigi.Task):
        def run(self) -> None:
            ran.append(self.task_id)

        def complete(self) -> bool:
            return bool(ran)

    rpc = Spied(luigid)
    worker = new_worker(rpc, "nectar-held-build:1", 1)
    env = luigi.interface.core(no_lock=True, scheduler_url=luigid)
    try:
        result = schedule_and_run(worker, HeldBuildProbe(), env)
    finally:
        forget_task_classes(__name__)
    assert result.scheduling_succeeded and ran == [HeldBuildProbe().task_id]
    assert rpc.trips == [["/api/add_task", "/api/add_worker", "/api/get_work"], ["/api/add_task"]]
    assert status_of(SchedulerClient(luigid), ran[0]) == "DONE"
    known = {info["name"]: info for info in SchedulerClient(luigid).call("worker_list")}
    assert known["nectar-held-build:1"]["first_task"] == ran[0]


@pytest.mark.parametrize(
    ("fails", "requests"),
    [
        (False, [["add_task", "add_worker", "get_work"], ["add_task"]]),
        (True, [["add_task", "add_worker", "get_work"], ["add_task", "get_work"]]),
    ],
    ids=["done: not asked again", "failed: asked again"],
)
def test_a_builds_calls_written_to_luigid_end_with_its_last_step_done(
    luigid: str, fails: bool, requests: list[list[str]]
) -> None:
    """Every request a build writes to luigid, and its calls (what luigid gets): those held go with the next in one
    request; a build whose steps all ended DONE asks luigid for no more work (it could grant none: a worker gets only
    the PENDING steps it added); one whose step failed asks, as luigi's worker does. luigid's view is the same: the
    step's state, its worker and the worker's first task."""
    ran: list[str] = []

    class CountedBuildProbe(luigi.Task):
        failing = luigi.BoolParameter()

        def run(self) -> None:
            ran.append(self.task_id)
            if self.failing:
                raise RuntimeError("the probe fails")

        def complete(self) -> bool:
            return bool(ran) and not self.failing

    made = Build(luigid, f"counted-build:{int(fails)}")
    assert isinstance(made.scheduler, LuigidRPC)
    written: list[list[str]] = []
    noted(made.scheduler.connections, written)
    try:
        made.run(CountedBuildProbe(failing=fails))
    finally:
        del made.scheduler.connections._request
        forget_task_classes(__name__)
    assert written == requests, written
    client = SchedulerClient(luigid)
    record = client.task(ran[0]) or {}
    assert record["status"] == ("FAILED" if fails else "DONE")
    assert record["workers"] == [made.worker_id]
    known = {info["name"]: info for info in client.call("worker_list")}
    assert known[made.worker_id]["first_task"] == ran[0]


def test_a_restarted_luigid_is_reached_on_the_next_call(tmp_path: Path) -> None:
    """A kept-alive connection that luigid closed by restarting is replaced on the next call.

    SchedulerClient has no retry loop of its own: its call answering proves the replacement."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_luigid(port, tmp_path)
    rpc, client = LuigidRPC(url), SchedulerClient(url)
    try:
        rpc.add_task(worker="w", task_id="Before_1", status="PENDING")
        client.check()
        stop(proc)
        proc = start_luigid(port, tmp_path)
        client.check()
        rpc.add_task(worker="w", task_id="After_1", status="PENDING")
        rpc.send_held()
        assert client.task("After_1") is not None
    finally:
        stop(proc)


def _local_port(connections: Connections) -> int:
    """The local port of this thread's connection of ``connections`` (0: none open)."""
    held = getattr(connections._local, "held", None)
    return int(held[1].sock.getsockname()[1]) if held is not None and held[1].sock is not None else 0


def test_a_process_builds_run_after_run_on_one_connection_to_luigid_and_past_its_restart(tmp_path: Path) -> None:
    """A process that takes run after run (:mod:`nectar.reuse`) keeps its connection to luigid from one build to
    the next, the same socket, not a connect and luigid's accept per run; luigid restarted between two builds, the
    next build runs on a new connection all the same, and the new luigid has its step DONE."""
    ran: list[str] = []

    class KeptBuildProbe(luigi.Task):
        n = luigi.IntParameter()

        def run(self) -> None:
            ran.append(self.task_id)

        def complete(self) -> bool:
            return self.task_id in ran

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_luigid(port, tmp_path / "first")
    ports = []
    try:
        for n in range(2):
            made = Build(url, f"kept-build:{n}")
            assert made.run(KeptBuildProbe(n=n)).scheduling_succeeded
            assert isinstance(made.scheduler, LuigidRPC)
            ports.append(_local_port(made.scheduler.connections))
        stop(proc)
        proc = start_luigid(port, tmp_path / "again")
        again = Build(url, "kept-build:2")
        assert again.scheduler is made.scheduler
        assert again.run(KeptBuildProbe(n=2)).scheduling_succeeded
        assert status_of(SchedulerClient(url), KeptBuildProbe(n=2).task_id) == "DONE"
    finally:
        stop(proc)
        forget_task_classes(__name__)
    assert ports[0] and ports[0] == ports[1], ports  # one connection for both builds
    assert len(ran) == 3


def test_a_client_kept_for_the_next_run_forgets_what_its_run_asked_and_did_not_read(
    luigid: str, settings: Settings
) -> None:
    """An attempt that asked luigid ahead and ended before it read the answer (its chain did not import) leaves
    nothing to the next run of its process: the kept client's next question is answered by luigid anew, on a
    connection in step (the one the unread answer was on is dropped); with nothing unread, the connection is kept."""
    settings = settings.replace(scheduler_url=luigid)
    client = kept_scheduler(settings)
    assert client is not None and kept_scheduler(settings) is client
    client.call("add_task", task_id="Forgot_1", status="PENDING", worker="test-forgot", family="Forgot")
    client.disable("Forgot_1", "test-forgot", "by hand")
    client.ask("dep_graph", task_id="Forgot_1", include_done=True)  # never read
    client.ask_disabled("Forgot_1")  # never read
    asked_on = _local_port(client.connections)
    client.settle()
    assert _local_port(client.connections) == 0  # dropped, out of step
    assert status_of(client, "Forgot_1") == "DISABLED"
    assert client.disabled("Forgot_1") == {}  # asked anew: the disable is a client's, not luigid's own
    kept_on = _local_port(client.connections)
    client.settle()
    assert kept_on and kept_on != asked_on and _local_port(client.connections) == kept_on


def test_luigid_down_is_scheduler_unavailable_naming_the_call() -> None:
    client = SchedulerClient(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(SchedulerUnavailable, match="is_paused failed"):
        client.check()


def test_an_http_error_from_luigid_is_scheduler_unavailable(luigid: str) -> None:
    with pytest.raises(SchedulerUnavailable, match="no_such_method failed: luigid answered 404"):
        SchedulerClient(luigid).call("no_such_method")


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST like luigid (``{"response": ...}``) and keeps the path, headers and form it got."""

    seen: list[tuple[str, str | None, str]] = []

    def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        answer = json.dumps({"response": {"ok": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    Recorder.seen = []
    server = bound_to_a_free_port(lambda address: ThreadingHTTPServer(address, Recorder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_url_with_credentials_and_a_path_prefix_is_honoured(recorder: int) -> None:
    """luigid behind a proxy: ``http://user:password@host/prefix`` (as luigi's own fetchers accept)."""
    url = f"http://nectar:p%40ss@127.0.0.1:{recorder}/luigi/"
    assert SchedulerClient(url).call("ping", worker="w") == {"ok": True}
    assert LuigidRPC(url).ping(worker="w") == {"ok": True}
    expected = "Basic " + base64.b64encode(b"nectar:p@ss").decode()
    assert [(path, auth) for path, auth, _ in Recorder.seen] == [("/luigi/api/ping", expected)] * 2
    assert all(body == "data=%7B%22worker%22%3A+%22w%22%7D" for _, _, body in Recorder.seen)


def test_calls_sent_together_to_a_server_that_closes_each_connection_all_arrive_in_order(recorder: int) -> None:
    """A server that answers one request per connection (HTTP/1.0, some proxies) reads none pipelined after it:
    each is sent again on a new connection, in order (one whose answer was lost with its connection may arrive
    twice, as luigi's retry loop would send it again); once it has closed a connection so, nothing more is sent
    ahead to it. (No batch: as to a luigid without the batch RPC.)"""
    rpc = LuigidRPC(f"http://127.0.0.1:{recorder}")
    rpc.connections.batches = False
    rpc.add_task(worker="w", task_id="Closing_1", status="PENDING")
    rpc.add_task(worker="w", task_id="Closing_2", status="PENDING")
    assert rpc.ping(worker="w") == {"ok": True}
    firsts = list(dict.fromkeys((path, body) for path, _, body in Recorder.seen))  # each call's first arrival
    assert [path for path, _ in firsts] == ["/api/add_task", "/api/add_task", "/api/ping"]
    assert ["Closing_1" in body for _, body in firsts] == [True, False, False]
    Recorder.seen.clear()
    rpc.add_task(worker="w", task_id="Closing_3", status="PENDING")
    assert rpc.ping(worker="w") == {"ok": True}
    assert [path for path, _, _ in Recorder.seen] == ["/api/add_task", "/api/ping"]


class Chunked(Recorder):
    """Answers as an HTTP/1.1 proxy may: kept alive, the body in chunks; the path ``/api/ping_eof`` without a
    length, closing the connection at its end."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, None, ""))
        answer = json.dumps({"response": {"path": self.path}}).encode()
        self.send_response(200)
        if self.path.endswith("_eof"):
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer)
            self.close_connection = True
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (answer[:5], answer[5:]):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")


def test_answers_in_chunks_or_ending_with_the_connection_are_read_whole() -> None:
    Chunked.seen = []
    server = bound_to_a_free_port(lambda address: ThreadingHTTPServer(address, Chunked))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = SchedulerClient(f"http://127.0.0.1:{server.server_address[1]}")
        assert client.call("ping") == {"path": "/api/ping"}
        assert client.call("ping") == {"path": "/api/ping"}  # the same connection, kept alive
        assert client.call("ping_eof") == {"path": "/api/ping_eof"}
        assert client.call("ping") == {"path": "/api/ping"}  # a new connection
        assert [path for path, _, _ in Chunked.seen] == ["/api/ping", "/api/ping", "/api/ping_eof", "/api/ping"]
    finally:
        server.shutdown()
        server.server_close()


class Scripted(RawServer):
    """A raw HTTP/1.1 server on a socket: each request's path noted, each answered with ``answer(path, n)``'s bytes
    (``n`` counting every request it got), answers in turn on a kept-alive connection."""

    def __init__(self, answer: Callable[[str, int], bytes]) -> None:
        self.answer = answer
        self.seen: list[str] = []
        self.bodies: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as requests:
            self._answer(conn, requests)

    def _answer(self, conn: socket.socket, requests: BinaryIO) -> None:
        while line := requests.readline():
            length = 0
            while (header := requests.readline()) not in (b"\r\n", b""):
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            self.bodies.append(requests.read(length))
            self.seen.append(line.split()[1].decode())
            conn.sendall(self.answer(self.seen[-1], len(self.seen)))


def ok(path: str, _: int = 0) -> bytes:
    body = json.dumps({"response": path}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_an_error_answer_to_a_call_sent_ahead_keeps_that_call_to_send_again_and_forgets_those_answered() -> None:
    """luigid refusing a call sent ahead: the next call is told which call it refused; that call is sent again before
    the caller's retry, and the calls luigid answered after it are not sent twice."""
    server = Scripted(lambda path, n: b"HTTP/1.1 500 Boom\r\nContent-Length: 0\r\n\r\n" if n == 1 else ok(path))
    try:
        connections = Connections(server.url, 10.0)
        connections.send("/api/A", {})
        connections.send("/api/B", {})
        with pytest.raises(LuigidError, match="500 Boom to /api/A"):
            connections.post("/api/C", {})
        assert connections.post("/api/C", {}) == ok("/api/C").partition(b"\r\n\r\n")[2]
        assert server.seen == ["/api/A", "/api/B", "/api/C", "/api/A", "/api/C"]
    finally:
        server.close()


def batch_of(*entries: object) -> bytes:
    body = json.dumps(entries).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_failed_call_of_a_batch_is_that_calls_error_sent_again_and_those_answered_after_it_are_not() -> None:
    """luigid failing one call of a batch (a fault it cannot be made to have once for real): the caller is told which
    call failed, as if each had gone alone; that call is sent again first with the caller's retry (luigi's retry loop
    sends the caller's call again), and the calls luigid answered after it are not sent twice."""
    failed = {"status": 500, "reason": "Internal Server Error"}
    batches = [
        batch_of({"response": "A"}, failed, {"response": "C"}, {"response": "D"}),
        batch_of({"response": "B"}, {"response": "D again"}),
    ]
    server = Scripted(lambda path, n: batches[n - 1] if n <= len(batches) else ok(path))
    try:
        connections = Connections(server.url, 10.0, batches=True)
        for path in ("/api/A", "/api/B", "/api/C"):
            connections.send(path, {"data": json.dumps({"call": path})})
        with pytest.raises(LuigidError, match="500 Internal Server Error to /api/B"):
            connections.post("/api/D", {"data": "{}"})
        assert connections.post("/api/D", {"data": "{}"}) == b'{"response": "D again"}'
        assert server.seen == [f"/api/{BATCH_RPC}", f"/api/{BATCH_RPC}"]
        sent = [json.loads(body) for body in server.bodies]
        assert sent == [
            [["A", {"call": "/api/A"}], ["B", {"call": "/api/B"}], ["C", {"call": "/api/C"}], ["D", {}]],
            [["B", {"call": "/api/B"}], ["D", {}]],
        ]
    finally:
        server.close()


@pytest.mark.parametrize(
    "refusal",
    [
        b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["405", "501-closing", "400"],
)
def test_a_server_refusing_the_batch_rpc_as_one_without_it_gets_each_call_alone_from_then_on(refusal: bytes) -> None:
    """A luigid behind a proxy (or another server) answering the batch RPC 405, 501 or 400, not luigi's 404: the
    calls held go again one by one, each answered, and the client sends no batch again (the batch was not run: a
    call's own failure comes inside a 200)."""
    server = Scripted(lambda path, n: refusal if path == f"/api/{BATCH_RPC}" else ok(path))
    try:
        connections = Connections(server.url, 10.0, batches=True)
        connections.send("/api/A", {"data": "{}"})
        assert connections.post("/api/B", {"data": "{}"}) == b'{"response": "/api/B"}'
        assert not connections.batches
        connections.send("/api/C", {"data": "{}"})
        assert connections.post("/api/D", {"data": "{}"}) == b'{"response": "/api/D"}'
        assert server.seen == [f"/api/{BATCH_RPC}", "/api/A", "/api/B", "/api/C", "/api/D"]
    finally:
        server.close()


@pytest.mark.parametrize("status", [b"500 Internal Server Error", b"502 Bad Gateway", b"503 Service Unavailable"])
def test_a_server_error_answering_a_batch_is_its_first_calls_error_and_batches_go_on(status: bytes) -> None:
    """luigid (or the proxy before it) failing a whole batch with a 5xx other than 501: a failure, not a server
    without the batch RPC: the caller is told it as its first call's, and the calls go in a batch again."""
    answers = [b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n", batch_of({"response": "A"}, {"response": "B"})]
    server = Scripted(lambda path, n: answers[n - 1])
    try:
        connections = Connections(server.url, 10.0, batches=True)
        connections.send("/api/A", {"data": "{}"})
        with pytest.raises(LuigidError, match=f"{status.decode()} to /api/A"):
            connections.post("/api/B", {"data": "{}"})
        assert connections.batches
        assert connections.post("/api/B", {"data": "{}"}) == b'{"response": "B"}'
        assert server.seen == [f"/api/{BATCH_RPC}", f"/api/{BATCH_RPC}"]
    finally:
        server.close()


def test_a_chunked_answer_cut_off_by_the_connection_is_no_answer() -> None:
    """An answer whose chunks end with the connection, before the last chunk, is incomplete: luigid unreachable, as
    ``http.client`` says, never the part read taken for the whole."""
    cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    left, right = socket.socketpair()
    with left, right:
        right.sendall(cut)
        right.close()
        with pytest.raises(http.client.IncompleteRead):
            _read_answers(left, 1)


def test_a_call_interrupted_after_its_write_leaves_no_answer_to_the_next_call() -> None:
    """A lease's signal raises in the attempt's main thread, possibly just after a call was written: the connection
    is dropped, so each later call reads its own answer, never the one before it. (The interruption is raised from
    the write: a signal cannot be made to land there for real.)"""
    server = Scripted(ok)

    class Interrupted(BaseException):
        pass

    try:
        connections = Connections(server.url, 10.0)
        write = connections._write

        class Sent:  # a socket whose write is interrupted once its bytes are sent
            def __init__(self, sock: socket.socket) -> None:
                self.sock = sock

            def sendall(self, data: bytes) -> None:
                self.sock.sendall(data)
                raise Interrupted

        def write_then_interrupted(conn: http.client.HTTPConnection, unread: _Unread) -> None:
            interrupted = http.client.HTTPConnection("127.0.0.1")
            interrupted.sock = Sent(conn.sock)
            write(interrupted, unread)

        vars(connections)["_write"] = write_then_interrupted  # this object's own, before its class's
        with pytest.raises(Interrupted):
            connections.send("/api/add_task", {})
        vars(connections)["_write"] = write
        assert connections.post("/api/get_work", {}) == ok("/api/get_work").partition(b"\r\n\r\n")[2]
        assert connections.post("/api/ping", {}) == ok("/api/ping").partition(b"\r\n\r\n")[2]
    finally:
        server.close()


@given(st.dictionaries(st.text(), st.text(), max_size=4))
def test_a_form_is_encoded_byte_for_byte_as_urlencode_encodes_it(form: dict[str, str]) -> None:
    assert form_body(form) == urllib.parse.urlencode(form).encode()


def test_a_form_of_luigis_is_encoded_as_urlencode_encodes_it() -> None:
    data = {"task_id": "Leaf_1_9a", "params": {"day": "2024-01-01", "text": "a b+c&d=é\u2028\x00😀"}, "deps": None}
    form = {"data": json.dumps(data), "worker": "nectar-host:1"}
    assert form_body(form) == urllib.parse.urlencode(form).encode()
    assert urllib.parse.parse_qs(form_body(form).decode()) == {name: [value] for name, value in form.items()}


def test_a_build_uses_luigis_settings_read_ahead_once_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker reads luigi's settings of its attempts' builds before it forks them (:func:`nectar.build.prepare`):
    each fresh process would read luigi's configuration again, 4.4 ms of a trivial attempt's CPU."""
    monkeypatch.setattr(build, "_PREPARED", {})
    read: list[str] = []
    core, worker = luigi.interface.core, luigi.worker.worker

    def reading(name: str, settings: Callable[..., Any]) -> Callable[..., Any]:
        def read_settings(**kwargs: Any) -> Any:
            read.append(name)
            return settings(**kwargs)

        return read_settings

    monkeypatch.setattr(luigi.interface, "core", reading("core", core))
    monkeypatch.setattr(luigi.worker, "worker", reading("worker", worker))
    Build(None, "host:1")
    assert read == ["core", "worker"]
    build.prepare(None)
    env, settings = build._PREPARED[None]
    read.clear()
    made = Build(None, "host:2")
    assert (read, made.env, made.worker._config) == ([], env, settings)
    Build("http://127.0.0.1:1", "host:3")  # prepared for another scheduler: read now
    assert read == ["core", "worker"]
