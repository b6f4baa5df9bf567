"""Our connections to luigid switched from HTTP to frames (nectar/luigid.py, nectar/luigid_server.py): against a
real luigid behind its guard, every kind of call our processes make is answered as over HTTP; only a request with
the scheduler secret is switched; a luigid without the switch (luigi's own) is talked to over HTTP; a connection
closed before its answer raises as over HTTP, the call not sent again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import re
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi.scheduler
import pytest
import tornado.web

from harness import LUIGI_CFG, Processes, bound_to_a_free_port
from harness.processes import base_env
from nectar.errors import SchedulerUnavailable
from nectar.luigid import (
    DISABLED_QUESTION,
    FRAMED,
    SECRET_ENV,
    SECRET_HEADER,
    UPGRADE_RPC,
    LuigidRPC,
    SchedulerClient,
)
from nectar.luigid_server import FramedRPC, LuigidRouter
from nectar.supervisor import GUARDED_LUIGID
from tests.conftest import wait_until
from tests.helpers.raw_server import RawServer
from tests.helpers.registries import known

SECRET = "a-scheduler-secret-for-the-upgrade-test"
LUIGIS_LUIGID = [sys.executable, "-c", "from luigi.cmdline import luigid; luigid()"]
WORKER = "Worker(salt=probe, workers=1, host=h, username=u, pid=1)"
TASK = "Probe_x_3f0a"
ADDED = {"task_id": TASK, "family": "Probe", "module": "probes", "params": {"n": "3"}, "deps": [], "runnable": True}


def start(processes: Processes, root: Path, name: str, argv: list[str], **settings: str) -> str:
    """The luigid ``argv`` starts (the project's luigi.cfg, a fresh state, :data:`SECRET` its guard's, ``settings``
    in its environment), on a free port (another if it was taken since its pick); its URL."""
    state = root / name
    state.mkdir()
    env = {**base_env(), "LUIGI_CONFIG_PATH": str(LUIGI_CFG), SECRET_ENV: SECRET, "NECTAR_DATA_DIR": str(state)}
    env.update(settings)

    def launch(port: int) -> subprocess.Popen[bytes]:
        listen = ["--address", "127.0.0.1", "--port", str(port), "--state-path", str(state / "state.pickle")]
        return processes.start(name, [*argv, *listen, "--logdir", str(state)], env, state)

    served = processes.serve(name, None, False, launch, "/static/visualiser/index.html")
    return f"http://127.0.0.1:{served.port}"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One guarded luigid (:data:`SECRET`, the project's settings) for this module's tests that add no task to it and
    do not pause it, each reading only that nothing it sent ran (no task PENDING, luigid not paused) or what a
    stateless call answers: what each leaves is what each expects. A test that adds a task, pauses luigid, reads its
    log or its process, or sets a setting of its own starts one of its own."""
    root = tmp_path_factory.mktemp("guarded")
    procs = Processes(root)
    try:
        yield start(procs, root, "guarded", GUARDED_LUIGID)
    finally:
        procs.close()


def framed(client: SchedulerClient | LuigidRPC) -> bool:
    """Whether the client's connection on this thread was switched to frames."""
    connections = client.connections
    conn, reused = connections._connection()
    return reused and connections._framed(conn)


def without_times(answer: Any) -> Any:
    if isinstance(answer, dict):
        times = {"start_time", "last_updated", "time_running", "first", "last"}
        return {key: without_times(value) for key, value in answer.items() if key not in times}
    if isinstance(answer, list):
        return [without_times(value) for value in answer]
    return answer


def calls(client: SchedulerClient) -> list[Any]:
    """Every kind of call our processes make of luigid, in turn, and its answer."""
    asked = client.ask("dep_graph", task_id=TASK, **DISABLED_QUESTION)
    return [
        client.call("add_task", worker=WORKER, status="PENDING", **ADDED),
        client.call("add_worker", worker=WORKER, info={"pid": 1}),
        client.call("get_work", worker=WORKER, host="h"),
        client.call("count_pending", worker=WORKER),
        client.call("add_task", worker=WORKER, task_id=TASK, status="FAILED", expl="boom " * 300, runnable=False),
        client.call("fetch_error", task_id=TASK),
        client.task(TASK),
        asked(),
        client.disabled(TASK),
        client.call("re_enable_task", task_id=TASK),
        client.call("is_paused"),
        client.call("resource_list"),
        client.call("task_list", status="FAILED", upstream_status=""),
    ]


def test_each_call_our_processes_make_is_answered_over_frames_as_over_http(
    processes: Processes, tmp_path: Path
) -> None:
    over_frames = SchedulerClient(start(processes, tmp_path, "framed", GUARDED_LUIGID), 60, SECRET)
    over_http = SchedulerClient(start(processes, tmp_path, "http", GUARDED_LUIGID), 60, SECRET)
    over_http.connections.frames = False
    assert without_times(calls(over_frames)) == without_times(calls(over_http))
    assert framed(over_frames) and not framed(over_http)
    with pytest.raises(SchedulerUnavailable, match="404"):  # an RPC luigid does not serve
        over_frames.call("no_such_rpc")
    with pytest.raises(SchedulerUnavailable, match="500"):  # the scheduler method raised
        over_frames.call("is_paused", bogus=1)
    assert over_frames.call("is_paused") == {"paused": False} and framed(over_frames)


def test_an_upgraded_connection_is_bounded_by_the_kernel_not_by_a_poll_before_each_send_and_read(
    processes: Processes, tmp_path: Path
) -> None:
    """Switched to frames, our connection blocks in its ``send`` and ``recv`` themselves, each bounded by the client's
    timeout in the kernel (``SO_SNDTIMEO``, ``SO_RCVTIMEO``): a Python timeout on the socket made it ask ``poll`` before
    each (two system calls more per call to luigid). Its calls are answered as before; one whose answer never comes
    still fails with its timeout (:func:`test_a_switch_whose_frames_are_never_answered_leaves_frames_for_http`)."""
    client = SchedulerClient(start(processes, tmp_path, "framed", GUARDED_LUIGID), 2.5, SECRET)
    assert client.call("add_task", worker=WORKER, status="PENDING", **ADDED) is None
    assert framed(client)
    sock = client.connections._connection()[0].sock
    assert sock.gettimeout() is None
    bound = struct.pack("@ll", 2, 500_000)
    for option in (socket.SO_SNDTIMEO, socket.SO_RCVTIMEO):
        assert sock.getsockopt(socket.SOL_SOCKET, option, len(bound)) == bound
    assert known(client.task(TASK))["status"] == "PENDING"
    assert client.connections._connection()[0].sock is sock


def test_luigis_worker_batches_its_calls_in_one_frame(processes: Processes, tmp_path: Path) -> None:
    """luigi's worker's held calls (add_task, add_worker) go with its get_work in one frame, answered as over HTTP."""
    answers = []
    for name, frames in (("framed", True), ("http", False)):
        rpc: Any = LuigidRPC(start(processes, tmp_path, name, GUARDED_LUIGID), 60, SECRET)  # luigi's, untyped
        rpc.connections.frames = frames
        rpc.add_task(worker=WORKER, status="PENDING", **ADDED)
        rpc.add_worker(WORKER, {"pid": 1})
        answers.append(without_times(rpc.get_work(worker=WORKER, host="h")))
        assert framed(rpc) is frames
    assert answers[0] == answers[1] and answers[0]["task_id"] == TASK


def test_a_client_pickled_is_a_client_of_the_same_luigid_with_the_secret_and_none_of_its_connections(
    processes: Processes, tmp_path: Path
) -> None:
    """luigi's worker puts a luigid message for an ``accepts_messages`` task on the task's queue with its scheduler
    client (to answer through): the client pickles as luigi's own does, its url, timeout and secret, and the copy
    opens its own connection (it raised ``TypeError`` on the ``threading.local`` of its connections)."""
    rpc: Any = LuigidRPC(start(processes, tmp_path, "pickled", GUARDED_LUIGID), 60, SECRET)  # luigi's, untyped
    rpc.add_task(worker=WORKER, status="PENDING", **ADDED)
    assert rpc.ping(worker=WORKER) is not None and framed(rpc)
    copy: Any = pickle.loads(pickle.dumps(rpc))
    assert (copy.url, copy.connect_timeout, copy.secret) == (rpc.url, 60, SECRET)
    assert copy.connections._connection()[1] is False, "the copy holds a connection it did not open"
    assert without_times(copy.get_work(worker=WORKER, host="h"))["task_id"] == TASK  # through the guard: the secret
    assert framed(copy)


def test_an_answer_read_from_a_frame_reaches_luigi_decoded_not_written_back_to_json(
    processes: Processes, tmp_path: Path
) -> None:
    """luigid answers a frame (and a batch over HTTP) with a batch's JSON, each call's entry in it: luigi's client is
    handed each entry as it was decoded (it was written back to JSON, and luigi read that again), and answers as over
    HTTP; a call alone over HTTP is handed its body."""
    answers, handed = [], []
    for name, frames in (("framed", True), ("http", False)):
        rpc: Any = LuigidRPC(start(processes, tmp_path, name, GUARDED_LUIGID), 60, SECRET)  # luigi's, untyped
        rpc.connections.frames = frames
        post = rpc.post

        def noted(path: str, form: dict[str, str], post: Any = post) -> Any:
            answer = post(path, form)
            handed.append(type(answer))
            return answer

        rpc.post = noted
        rpc.add_task(worker=WORKER, status="PENDING", **ADDED)
        answers.append([without_times(rpc.get_work(worker=WORKER, host="h")), rpc.ping(worker=WORKER)])
        assert framed(rpc) is frames
    assert answers[0] == answers[1] and answers[0][0]["task_id"] == TASK
    assert handed == [dict, dict, dict, bytes], "an answer read from a frame was handed to luigi as JSON again"


def upgrade(url: str, headers: dict[str, str]) -> tuple[bytes, socket.socket]:
    """The answer's head to a request to switch to frames, with ``headers``, and its socket."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    lines = [f"GET /api/{UPGRADE_RPC} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: Upgrade", f"Upgrade: {FRAMED}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        got = sock.recv(65536)
        if not got:
            break
        head += got
    return head, sock


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "not-the-secret"}])
def test_a_request_without_the_secret_is_not_switched_and_reaches_no_scheduler(
    guarded: str, headers: dict[str, str]
) -> None:
    url = guarded
    head, sock = upgrade(url, headers)
    try:
        assert head.startswith(b"HTTP/1.1 403 "), head
        call = b'[["add_task", {"worker": "w", "task_id": "Stranger_1", "status": "PENDING"}]]'
        sock.sendall(len(call).to_bytes(4, "big") + call)  # a frame, as if switched: to tornado, no request
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # until luigid closes the connection
            pass
    finally:
        sock.close()
    ours = SchedulerClient(url, 60, SECRET)
    assert ours.call("task_list", status="PENDING", upstream_status="") == {}
    head, sock = upgrade(url, {SECRET_HEADER: SECRET})
    sock.close()
    assert head.startswith(b"HTTP/1.1 101 ") and f"Upgrade: {FRAMED}".encode() in head, head


def test_a_frame_over_tornados_bound_on_a_body_closes_its_connection_unanswered(guarded: str) -> None:
    """As tornado closes a connection whose request announces a body over its bound (100 MB), luigid closes one whose
    frame announces as much, before it arrives, and runs nothing of it; other connections are served on."""
    url = guarded
    head, sock = upgrade(url, {SECRET_HEADER: SECRET})
    try:
        assert head.startswith(b"HTTP/1.1 101 "), head
        sock.sendall((2**32 - 1).to_bytes(4, "big") + b'[["pause", {}]]')
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
    finally:
        sock.close()
    assert SchedulerClient(url, 60, SECRET).call("is_paused") == {"paused": False}


def test_a_call_in_a_frame_is_logged_as_a_frame(processes: Processes, tmp_path: Path) -> None:
    """An operator reading luigid's log sees the transport: a call that came in a frame is logged ``FRAME <method>``
    (a 404 at WARNING, a raise's traceback at ERROR), not as a POST."""
    client = SchedulerClient(start(processes, tmp_path, "guarded", GUARDED_LUIGID), 60, SECRET)
    with pytest.raises(SchedulerUnavailable, match="404"):
        client.call("no_such_rpc")
    with pytest.raises(SchedulerUnavailable, match="500"):
        client.call("is_paused", bogus=1)
    assert client.call("is_paused") == {"paused": False} and framed(client)
    log = tmp_path / "guarded" / "luigi-server.log"

    def logged() -> str:  # without the process ids
        return re.sub(r"\[\d+\]", "", log.read_text())

    raised = "tornado.application ERROR: Uncaught exception FRAME is_paused (127.0.0.1)\n"
    wait_until(lambda: raised in logged())
    text = logged()
    assert "tornado.access WARNING: 404 FRAME no_such_rpc (127.0.0.1)\n" in text
    assert "tornado.access ERROR: 500 FRAME is_paused (127.0.0.1)\n" in text
    assert "got an unexpected keyword argument 'bogus'" in text and "POST" not in text


def peer_closed(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (an end of file waits on it), nothing read from it. ``poll``, not
    ``select``: a test process may hold descriptors past ``select``'s 1,024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0)) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""


def test_an_idle_upgraded_connection_is_closed_after_its_answers(processes: Processes, tmp_path: Path) -> None:
    """As tornado closes an HTTP connection that sends no next request for its idle timeout, luigid closes an
    upgraded one silent that long (``NECTAR_SCHEDULER_IDLE_TIMEOUT``, 2 s here), after answering what it sent (a
    frame sent with the upgrade's request: nothing can come late)."""
    url = start(processes, tmp_path, "guarded", GUARDED_LUIGID, NECTAR_SCHEDULER_IDLE_TIMEOUT="2")
    port = int(url.rsplit(":", 1)[1])
    lines = [f"GET /api/{UPGRADE_RPC} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: Upgrade", f"Upgrade: {FRAMED}"]
    request = ("\r\n".join([*lines, f"{SECRET_HEADER}: {SECRET}"]) + "\r\n\r\n").encode()
    call, answer = b'[["is_paused", {}]]', b'[{"response": {"paused": false}}]'
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:  # the timeout fails a hung test only
        sock.sendall(request + len(call).to_bytes(4, "big") + call)
        read = b""
        while got := sock.recv(65536):  # the 101 and the answer, then the end of the connection
            read += got
    head, _, frames = read.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and frames == len(answer).to_bytes(4, "big") + answer, read


class IdleClosingServer(RawServer):
    """Switches each connection to frames and answers its frames as luigid answers ``is_paused``; its first
    connection it closes once :attr:`idle` is set: luigid's idle timeout at a moment the test chooses (a real one
    closes after a time). Counts the connections."""

    def __init__(self) -> None:
        self.idle = threading.Event()
        self.connections = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        self.connections += 1
        first = self.connections == 1
        data = read_head(conn).partition(b"\r\n\r\n")[2]
        conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {FRAMED}\r\n\r\n".encode())
        answer = b'[{"response": {"paused": false}}]'
        while not (first and self.idle.is_set()):
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                if not (got := conn.recv(65536)):
                    return  # the client closed it
                data += got
            data = data[4 + int.from_bytes(data[:4], "big") :]
            conn.sendall(len(answer).to_bytes(4, "big") + answer)
            if first:
                self.idle.wait(60)  # the test says when it is idle: it sends nothing more on it before


def test_an_upgraded_connection_closed_while_idle_is_made_anew_by_our_clients_next_call() -> None:
    """luigid closed an upgraded connection as idle: our client's next call goes on a new upgraded connection, not
    failed (its closed-while-idle retry)."""
    server = IdleClosingServer()
    try:
        client = SchedulerClient(server.url, 60, SECRET)
        assert client.call("is_paused") == {"paused": False} and framed(client)
        first = client.connections._connection()[0].sock
        server.idle.set()
        wait_until(lambda: peer_closed(first))
        assert client.call("is_paused") == {"paused": False} and framed(client)
        assert client.connections._connection()[0].sock is not first and server.connections == 2
    finally:
        server.close()


def test_a_luigid_without_frames_is_talked_to_over_http(processes: Processes, tmp_path: Path) -> None:
    client = SchedulerClient(start(processes, tmp_path, "luigis", LUIGIS_LUIGID), 60, SECRET)
    assert client.call("add_task", worker=WORKER, status="PENDING", **ADDED) is None
    assert known(client.task(TASK))["status"] == "PENDING"
    assert client.connections.frames is False and not framed(client)


class ClosingServer(RawServer):
    """A server that answers a switch to frames as ``frames`` says (``101``, else a 404 kept alive), then closes the
    connection once a call's request has arrived, unanswered: luigid gone mid-call (a fault a real luigid cannot be
    made to show at that moment). Counts the calls that arrived."""

    def __init__(self, frames: bool) -> None:
        self.frames = frames
        self.arrived = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        if self.frames:
            conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {FRAMED}\r\n\r\n".encode())
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        while not rest:
            rest = conn.recv(65536)
        self.arrived += 1


@pytest.mark.parametrize("frames", [True, False], ids=["frames", "http"])
def test_a_connection_closed_before_its_answer_raises_the_call_not_sent_again(frames: bool) -> None:
    server = ClosingServer(frames)
    try:
        client = SchedulerClient(server.url, 60, SECRET)
        with pytest.raises(SchedulerUnavailable, match="closed the connection"):
            client.call("is_paused")
        assert client.connections.frames is frames
        wait_until(lambda: server.arrived == 1)
    finally:
        server.close()
    assert server.arrived == 1


def peak_memory(pid: int) -> int:
    """The most memory ``pid`` has held at once (``VmHWM``, kB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def unread_by_peer(sock: socket.socket) -> int:
    """The bytes sent on ``sock`` (IPv4, this machine) that its peer's process has not read yet (its ``rx_queue``)."""
    here, there = sock.getsockname()[1], sock.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == there and int(fields[2].split(":")[1], 16) == here:
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no socket of port {there} connected to {here}")


def test_a_client_that_reads_no_answers_is_read_no_further_than_luigid_can_send(
    processes: Processes, tmp_path: Path
) -> None:
    """Frames sent without their answers read: luigid answers no more of them once its answers not yet sent pass the
    transport's mark, so what it holds stays bounded; every answer still comes, in order, as they are read."""
    url = start(processes, tmp_path, "guarded", GUARDED_LUIGID)
    luigid = processes.procs[-1].pid
    ours = SchedulerClient(url, 60, SECRET)
    ours.call("add_task", worker=WORKER, status="PENDING", **ADDED)
    ours.call("add_task", worker=WORKER, task_id=TASK, status="FAILED", expl="x" * 1_000_000, runnable=False)
    before = peak_memory(luigid)
    head, sock = upgrade(url, {SECRET_HEADER: SECRET})
    try:
        assert head.startswith(b"HTTP/1.1 101 "), head
        call = f'[["fetch_error", {{"task_id": "{TASK}"}}]]'.encode()
        count = 200  # ~40 bytes each, answered with 1 MB each: 200 MB if luigid held every answer
        sock.sendall((len(call).to_bytes(4, "big") + call) * count)
        wait_until(lambda: unread_by_peer(sock) == 0, 60)  # luigid read the frames
        assert ours.call("is_paused") == {"paused": False}  # luigid's loop is past what it does with them
        grew = peak_memory(luigid) - before
        reader = sock.makefile("rb")
        for _ in range(count):
            answer = reader.read(int.from_bytes(reader.read(4), "big"))
            assert answer.startswith(b'[{"response": {"taskId": '), answer[:100]
        reader.close()
    finally:
        sock.close()
    assert grew < 50_000, f"luigid's peak memory grew by {grew} kB"


def reset_by_peer(sock: socket.socket) -> bool:
    """Whether the other end ended ``sock`` (a reset, or its end once what it sent was read), nothing read from it."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def test_a_client_that_reads_no_answers_for_the_idle_timeout_is_cut_off(processes: Processes, tmp_path: Path) -> None:
    """luigid's answers to a client that sends frames and never reads wait past the transport's mark: luigid reads
    that connection no further; once they waited ``NECTAR_SCHEDULER_IDLE_TIMEOUT`` (1 s here), it aborts it, as it
    closes one silent that long, rather than hold the connection and its answers for good. Others are served on."""
    url = start(processes, tmp_path, "guarded", GUARDED_LUIGID, NECTAR_SCHEDULER_IDLE_TIMEOUT="1")
    ours = SchedulerClient(url, 60, SECRET)
    ours.call("add_task", worker=WORKER, status="PENDING", **ADDED)
    ours.call("add_task", worker=WORKER, task_id=TASK, status="FAILED", expl="x" * 1_000_000, runnable=False)
    head, sock = upgrade(url, {SECRET_HEADER: SECRET})
    try:
        assert head.startswith(b"HTTP/1.1 101 "), head
        call = f'[["fetch_error", {{"task_id": "{TASK}"}}]]'.encode()
        sock.sendall((len(call).to_bytes(4, "big") + call) * 50)  # answered with 1 MB each: past what sockets hold
        wait_until(lambda: reset_by_peer(sock))
    finally:
        sock.close()
    assert ours.call("is_paused") == {"paused": False}


def test_frames_sent_with_the_upgrades_request_are_answered(guarded: str) -> None:
    """A client that sends its first frames without waiting for the 101 (in the same packet as its request): tornado
    read them with the request; they are answered, in order, not lost."""
    url = guarded
    port = int(url.rsplit(":", 1)[1])
    lines = [f"GET /api/{UPGRADE_RPC} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: Upgrade", f"Upgrade: {FRAMED}"]
    request = ("\r\n".join([*lines, f"{SECRET_HEADER}: {SECRET}"]) + "\r\n\r\n").encode()
    frames = b"".join(
        len(call).to_bytes(4, "big") + call for call in (b'[["is_paused", {}]]', b'[["no_such_rpc", {}]]')
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:  # the timeout fails a hung test only
        sock.sendall(request + frames)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 101 ")
        while reader.readline() not in (b"\r\n", b""):
            pass
        answers = [reader.read(int.from_bytes(reader.read(4), "big")) for _ in range(2)]
        reader.close()
    assert answers == [b'[{"response": {"paused": false}}]', b'[{"status": 404, "reason": "Not Found"}]']


class SwitchingProxy(ClosingServer):
    """A proxy that answers a switch to frames ``101`` itself, then passes nothing (frames go nowhere), and answers
    any other request as luigid answers ``is_paused``: a fault no real luigid shows. Counts the switches."""

    ANSWER = b'{"response": {"paused": false}}'

    def __init__(self) -> None:
        self.switched = 0
        super().__init__(frames=True)

    def handle(self, conn: socket.socket) -> None:
        head = read_head(conn)
        if f"Upgrade: {FRAMED}".encode() in head:
            self.switched += 1
            conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {FRAMED}\r\n\r\n".encode())
            while conn.recv(65536):  # until the client gives up
                pass
            return
        while head:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(self.ANSWER), self.ANSWER))
            head = read_head(conn)


def read_head(conn: socket.socket) -> bytes:
    """A request's head (and what came with it) as read from ``conn``; empty once the client closed it."""
    data = b""
    while b"\r\n\r\n" not in data and (got := conn.recv(65536)):
        data += got
    return data


def test_a_switch_whose_frames_are_never_answered_leaves_frames_for_http() -> None:
    """A 101 from a proxy that then passes no frame: the call waits its timeout and fails, once; the next calls go
    over HTTP, not over another such switch each."""
    proxy = SwitchingProxy()
    try:
        client = SchedulerClient(proxy.url, 1, SECRET)  # luigid's answer awaited 1 s: the proxy never gives one
        with pytest.raises(SchedulerUnavailable, match="timed out"):
            client.call("is_paused")
        assert client.call("is_paused") == {"paused": False}
        assert client.call("is_paused") == {"paused": False}
        assert client.connections.frames is False and proxy.switched == 1
    finally:
        proxy.close()


def test_a_silent_client_whose_answers_wait_under_the_mark_is_cut_off(tmp_path: Path) -> None:
    """A client that sends a frame, reads none of its answer and goes silent, the answer too small to pass the
    transport's high-water mark (luigid never paused it): once silent ``idle_timeout``, the connection is reset, not
    closed (asyncio's close waits for the answer to be sent, for good: the connection and its answer were kept). The
    sockets' buffers are set small (kernel buffers of a few kB, not tuned up), so that the answer, ~40 kB, stays
    mostly in the transport's buffer, under its mark (64 kB). luigid's own :class:`FramedRPC` and router, on a loop
    of the test's, over real TCP sockets."""
    scheduler = luigi.scheduler.Scheduler()
    scheduler.add_task(worker=WORKER, status="PENDING", **ADDED)
    scheduler.add_task(worker=WORKER, task_id=TASK, status="FAILED", expl="x" * 40_000, runnable=False)
    router = LuigidRouter(tornado.web.Application(), scheduler, idle_timeout=1.0)
    with framed_on_a_loop(router, small_buffers=True) as (client, protocols):
        call = f'[["fetch_error", {{"task_id": "{TASK}"}}]]'.encode()
        client.sendall(len(call).to_bytes(4, "big") + call)
        wait_until(lambda: reset_by_peer(client))
        assert protocols and not protocols[0].paused  # under the mark all along: the idle close's case, not a pause's


@contextlib.contextmanager
def framed_on_a_loop(
    router: LuigidRouter, small_buffers: bool = False
) -> Iterator[tuple[socket.socket, list[FramedRPC]]]:
    """A client's socket connected to luigid's own :class:`FramedRPC` (the router's, upgraded), served on a loop of
    the test's over real TCP sockets; with ``small_buffers``, the client's receive and the server's send buffers of
    a few kB (set before the connect: the client's window stays small)."""
    loop = asyncio.new_event_loop()
    served = threading.Thread(target=loop.run_forever, daemon=True)
    served.start()
    listener = bound_to_a_free_port(socket.create_server)
    client = socket.socket()
    if small_buffers:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        if small_buffers:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        protocols: list[FramedRPC] = []

        def made() -> FramedRPC:
            protocols.append(FramedRPC(router, "test", 1 << 20))
            return protocols[-1]

        asyncio.run_coroutine_threadsafe(loop.connect_accepted_socket(made, server), loop).result(60)
        yield client, protocols
    finally:
        client.close()
        listener.close()
        loop.call_soon_threadsafe(loop.stop)
        served.join(60)
        loop.close()


def test_frames_read_into_one_buffer_are_answered_whole_however_they_arrive() -> None:
    """luigid's :class:`FramedRPC` reads each chunk into its one buffer (no 256 kB bytes object a read, which some
    luigid processes got from the kernel and gave back at each frame) and answers each frame once it is whole: two in
    one send, then one sent a byte at a time, then one larger than that buffer."""
    scheduler = luigi.scheduler.Scheduler()
    router = LuigidRouter(tornado.web.Application(), scheduler, idle_timeout=60.0)
    with framed_on_a_loop(router) as (client, protocols):
        read = client.makefile("rb")
        assert read.readline().startswith(b"HTTP/1.1 101 ")
        while read.readline() not in (b"\r\n", b""):
            pass

        def frame(calls: str) -> bytes:
            return len(calls.encode()).to_bytes(4, "big") + calls.encode()

        def answer() -> list[Any]:
            size = int.from_bytes(read.read(4), "big")
            return list(json.loads(read.read(size)))

        paused = '[["is_paused", {}]]'
        client.sendall(frame(paused) + frame(paused))
        assert answer() == answer() == [{"response": {"paused": False}}]
        for byte in frame(paused):
            client.sendall(bytes([byte]))
        assert answer() == [{"response": {"paused": False}}]
        large = f'[["is_paused", {{}}], ["task_search", {{"task_str": "{"x" * 100_000}"}}]]'
        client.sendall(frame(large))
        assert [sorted(entry) for entry in answer()] == [["response"], ["response"]]
        buffer = protocols[0].get_buffer(-1)
        assert buffer is protocols[0].get_buffer(-1) and len(buffer) < 128 * 1024
