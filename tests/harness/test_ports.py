"""A part the harness starts on a port (luigid, moto, the API under gunicorn) is up only when the process answering
there is the one it started, or a descendant of it; a part whose port was taken between its pick and its bind
(another test's luigid, an outgoing connection's own end) is started again on another free port."""

from __future__ import annotations

import ast
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import (
    REPO,
    PortTaken,
    Processes,
    Served,
    answers,
    base_env,
    bound_to_a_free_port,
    free_port,
    listening,
    listens,
    port_share,
    settings_env,
)
from nectar.config import Settings
from nectar.ports import PortInUse, ensure_apart, held_by, listed_in_proc_net, listening_inodes

#: each part the harness starts on a port, started on ``port`` (its first try)
PARTS: dict[str, Callable[[Processes, int, Path, Settings, bool], Served]] = {
    "api": lambda processes, port, _, settings, fixed: processes.api(
        port, base_env() | settings_env(settings), workers=1, fixed=fixed
    ),
    "luigid": lambda processes, port, folder, _, fixed: processes.luigid(port, folder / "luigid", fixed=fixed),
    "moto": lambda processes, port, _, __, fixed: processes.moto(port, fixed=fixed),
}


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_free_port_hands_out_each_port_once() -> None:
    """The kernel's pick for a ``bind`` to port 0 is random: 500 picks among its ~14,000 odd ports repeat one ~9
    times over (a test that picked two ports for ``nectar serve``, its API's and luigid's, was once given one)."""
    picked = [free_port() for _ in range(500)]

    assert len(set(picked)) == len(picked)


@pytest.mark.parametrize("share", [0, 1, 2])
def test_each_xdist_worker_is_handed_ports_no_other_worker_is(monkeypatch: pytest.MonkeyPatch, share: int) -> None:
    """Two workers of a session pick ports at the same time; each is handed ports of a share of its own."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{share}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")

    picked = [free_port() for _ in range(50)]

    assert port_share() == (share, 3)
    assert {(port >> 1) % 3 for port in picked} == {share}


#: a test's subprocess that picks ports (a harness part's starter, a benchmark's): prints the ``argv[1]`` it is handed
PICKER = "import sys\nfrom harness import free_port\nprint(*[free_port() for _ in range(int(sys.argv[1]))])"


def test_a_subprocess_of_a_test_is_handed_no_port_its_test_was() -> None:
    """A test's subprocess inherits its test's xdist share (the environment) but not what its test was handed: each
    picked 300 of the share's ~7,000 odd ports, a dozen the same on average, the subprocess's part then bound first
    a port its test had picked for a part of its own. Every process is handed ports no other living one holds."""
    ours = [free_port() for _ in range(300)]

    picker = subprocess.run([sys.executable, "-c", PICKER, "300"], cwd=REPO, capture_output=True, text=True, check=True)

    theirs = [int(port) for port in picker.stdout.split()]
    assert len(set(theirs)) == len(theirs) == 300
    assert set(ours).isdisjoint(theirs), sorted(set(ours) & set(theirs))


def test_a_port_taken_between_its_pick_and_the_bind_is_given_up_for_another() -> None:
    """Another process binds the port :func:`free_port` picked before this test's own ``bind`` does (here the test
    itself, inside the bind it hands over): the socket is bound on another free port, the holder keeps its own."""
    held: list[socket.socket] = []

    def taken_first(address: tuple[str, int]) -> socket.socket:
        if not held:
            held.append(socket.create_server(address))
        return socket.create_server(address)

    with bound_to_a_free_port(taken_first) as ours, held[0] as theirs:
        assert ours.getsockname()[1] != theirs.getsockname()[1]
        assert listening(ours.getsockname()[1]) and listening(theirs.getsockname()[1])


#: the hosts of an address a socket is bound to
HOSTS = {"", "localhost", "127.0.0.1", "0.0.0.0", "::1", "::"}
#: the files of tests, benchmarks and the harness that bind a socket to port 0, and how many times: free_port's pick
PORT_ZERO_ALLOWED = {"harness/processes.py": 1}


def _literal(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def binds_to_port_zero(source: str) -> int:
    """How many addresses ``(host, 0)`` and ``port=0`` arguments ``source`` writes."""
    found = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple) and len(node.elts) == 2:
            found += _literal(node.elts[0]) in HOSTS and _literal(node.elts[1]) == 0
        elif isinstance(node, ast.keyword) and node.arg == "port":
            found += _literal(node.value) == 0
    return found


def test_no_socket_of_the_tests_the_harness_or_the_benchmarks_is_bound_to_port_zero_but_free_ports_pick() -> None:
    """The kernel's pick for a ``bind`` to port 0 may be a port :func:`free_port` handed the other xdist worker,
    whose part binds it a moment later and cannot: every socket of a test has its port through
    :func:`bound_to_a_free_port` (before, ~20 sockets were bound to port 0 directly)."""
    found = {}
    for folder in ("tests", "harness", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if count := binds_to_port_zero(path.read_text()):
                found[str(path.relative_to(REPO))] = count

    assert found == PORT_ZERO_ALLOWED


@pytest.mark.parametrize(
    ("api", "luigid", "apart"),
    [
        ("127.0.0.1", "127.0.0.1", False),
        ("0.0.0.0", "127.0.0.1", False),
        ("::1", "::", False),
        ("[::1]", "::1", False),
        ("localhost", "127.0.0.2", False),  # a name may be either address
        ("127.0.0.1", "127.0.0.2", True),
        ("127.0.0.1", "::1", True),
    ],
)
def test_two_listeners_on_one_port_are_apart_only_on_two_addresses_that_differ(
    api: str, luigid: str, apart: bool
) -> None:
    listeners = (api, 8000, "the API, --port"), (luigid, 8000, "luigid, --scheduler-port")
    ensure_apart((api, 8000, "the API"), (luigid, 8001, "luigid"))  # two ports: apart, wherever they listen
    if apart:
        ensure_apart(*listeners)
    else:
        with pytest.raises(PortInUse, match="^the API, --port and luigid, --scheduler-port are both port 8000: "):
            ensure_apart(*listeners)


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_whose_port_another_server_answers_on_is_not_up_there(
    part: str, processes: Processes, luigid: str, settings: Settings, tmp_path: Path
) -> None:
    """Another test's luigid listens on the port (it took it between the pick and the part's bind): the part, which
    cannot bind it, is not reported up because luigid answers its readiness poll; with its port fixed (its clients
    know it), :class:`PortTaken` says so. Before, the API was reported up (luigid's 404 is an answer), and the test
    talked to luigid."""
    taken = port_of(luigid)
    with pytest.raises(PortTaken, match=str(taken)):
        PARTS[part](processes, taken, tmp_path, settings, True)
    [started] = processes.procs
    assert started.poll() is not None, "the part that could not bind still runs"
    assert answers(f"{luigid}/api/worker_list") == 200  # the other server was left alone


def listening_v6(address: tuple[str, int]) -> socket.socket:
    return socket.create_server(address, family=socket.AF_INET6)


@contextmanager
def outgoing_connection_from(server: str) -> Iterator[int]:
    """A connection to ``server`` whose own end holds a port (as an ephemeral port does, without ``SO_REUSEADDR``:
    nothing may bind it while it lives, and nothing answers there); the port."""
    address = "127.0.0.1", port_of(server)
    with bound_to_a_free_port(lambda own: socket.create_connection(address, source_address=own)) as conn:
        yield conn.getsockname()[1]


@pytest.mark.parametrize("part", sorted(PARTS))
@pytest.mark.parametrize("holder", ["another server", "an outgoing connection"])
def test_a_part_whose_port_was_taken_since_its_pick_starts_on_another_and_answers_there_itself(
    part: str, holder: str, processes: Processes, luigid: str, settings: Settings, tmp_path: Path
) -> None:
    """The port the harness tried first is held, by another test's luigid (which answers) or by an outgoing
    connection's own end (nothing answers; the part exits, gunicorn after its retries): the part is started again
    on another free port, answers there from its own process, and the caller reads that port; the holder keeps
    its own."""
    with outgoing_connection_from(luigid) if holder == "an outgoing connection" else _port(luigid) as taken:
        served = PARTS[part](processes, taken, tmp_path, settings, False)
        assert served.port != taken
        assert listens(served.proc.pid, served.port) is True
        assert listens(served.proc.pid, taken) is not True
    assert answers(f"http://127.0.0.1:{served.port}/") is not None
    assert answers(f"{luigid}/api/worker_list") == 200  # the other server was left alone


@pytest.mark.parametrize("which", ["the API's", "luigid's"])
def test_nectar_serve_whose_port_was_taken_since_its_pick_starts_on_two_others_and_answers_there_itself(
    which: str, processes: Processes, luigid: str, tmp_path: Path
) -> None:
    """Another test's luigid took the port ``nectar serve`` was to have for its API or its luigid: ``serve`` refuses
    it (``PortInUse``, exit 2), or the harness sees luigid answer there, and starts ``serve`` again on two other free
    ports, where its own API and luigid answer; the caller reads those. Before, tests started it once on two
    ``free_port()``s and failed."""
    taken = port_of(luigid)
    project = tmp_path / "project"
    project.mkdir()
    (project / "chains").symlink_to(REPO / "chains")
    (project / "configuration").symlink_to(REPO / "configuration")
    port, scheduler_port = (taken, None) if which == "the API's" else (None, taken)
    args = ["--data-dir", str(tmp_path / "data"), "--workers", "1"]

    served = processes.nectar_serve(
        base_env() | {"ENV": "local"}, project, args, port=port, scheduler_port=scheduler_port
    )

    refused, *_ = processes.procs
    assert refused is not served.proc and refused.poll() is not None  # exited refusing it, or killed: luigid answered
    assert served.scheduler_port is not None and taken not in (served.port, served.scheduler_port)
    assert listens(served.proc.pid, served.port) is True and listens(served.proc.pid, served.scheduler_port) is True
    assert answers(f"http://127.0.0.1:{served.scheduler_port}/api/worker_list") == 200
    assert answers(f"{luigid}/api/worker_list") == 200  # the other server was left alone


@contextmanager
def _port(url: str) -> Iterator[int]:
    yield port_of(url)


def test_the_sockets_listening_on_a_port_are_those_proc_net_tcp_lists(luigid: str) -> None:
    """What the kernel's socket diagnostics answer (:func:`nectar.ports.listening_inodes`, read once per part start
    by ``nectar serve`` and the harness) is what ``/proc/net/tcp`` lists (its fallback where netlink is refused), for
    a luigid, an IPv4 and an IPv6 listener of this test's, a port with only a connection on it and one with nothing."""
    with (
        bound_to_a_free_port(socket.create_server) as v4,
        bound_to_a_free_port(listening_v6, "::1") as v6,
        outgoing_connection_from(luigid) as connected,
    ):
        ports = [port_of(luigid), v4.getsockname()[1], v6.getsockname()[1]]
        for port in ports:
            assert len(listening(port)) == 1 and listening(port) == listed_in_proc_net(port), port
        assert listening(connected) == listed_in_proc_net(connected) == set()
    assert all(listening(port) == set() for port in ports[1:])


def test_where_netlink_is_refused_the_listening_sockets_are_read_from_proc_net_tcp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel or sandbox that refuses the socket diagnostics (no NETLINK_SOCK_DIAG: a fault this machine cannot
    cause, hence the only mock here): :func:`nectar.ports.listening_inodes` answers from ``/proc/net/tcp``, so
    ``nectar serve``'s readiness and the harness's still tell whose socket listens on a port."""
    with bound_to_a_free_port(socket.create_server) as server:
        port = server.getsockname()[1]
        asked = listening(port)
        real = socket.socket

        def refusing(family: int = -1, kind: int = -1, proto: int = -1) -> socket.socket:
            if family == socket.AF_NETLINK:
                raise PermissionError(1, "Operation not permitted")
            return real(family, kind, proto)

        monkeypatch.setattr(socket, "socket", refusing)
        assert listening(port) == asked == listed_in_proc_net(port) and len(asked) == 1


#: an IP protocol number no kernel has socket diagnostics for (unassigned): asked for it, the kernel answers a dump as
#: it answers one for TCP where ``tcp_diag`` is not loaded (a container cannot load it): its end carries -ENOENT
UNDIAGNOSED = 200


def test_a_kernel_without_tcp_diagnostics_is_read_through_proc_net_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump the kernel cannot make ends with an error, not with nothing found: :func:`nectar.ports.listening_inodes`
    reads ``/proc/net/tcp`` then, so a part that answers on its port is still found up there (before, every port read
    as one nothing listens on: no part the harness or ``nectar serve`` started was ever ready)."""
    with bound_to_a_free_port(socket.create_server) as v4, bound_to_a_free_port(listening_v6, "::1") as v6:
        ports = [v4.getsockname()[1], v6.getsockname()[1]]
        monkeypatch.setattr(socket, "IPPROTO_TCP", UNDIAGNOSED)  # what the dump asks for (the kernel answers it)
        for port in ports:
            assert len(listening(port)) == 1 and listening(port) == listed_in_proc_net(port), port
            assert held_by(port, [os.getpid()]) is True


#: seconds that only a hung test reaches
HANG = 60.0


@contextmanager
def netlink_answered_by(answers: list[bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The socket diagnostics asked for as ``socket.socket`` is: a real datagram socket whose other end has sent
    ``answers`` and reads nothing (a kernel's malformed answer or a sandbox's silence: faults this machine cannot
    cause, hence a stand-in for the netlink socket only)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    real = socket.socket

    def diagnostics(family: int = -1, kind: int = -1, proto: int = -1) -> socket.socket:
        return ours if family == socket.AF_NETLINK else real(family, kind, proto)

    with ours, theirs:
        for answer in answers:
            theirs.send(answer)
        monkeypatch.setattr(socket, "socket", diagnostics)
        yield
        monkeypatch.undo()


@pytest.mark.parametrize(
    "answer",
    [b"\x10\x00", struct.pack("=IHHII", 0, 20, 2, 1, 0), struct.pack("=IHHII", 96, 20, 2, 1, 0)],
    ids=["shorter-than-a-header", "a-message-of-no-length", "a-message-longer-than-its-answer"],
)
def test_a_malformed_answer_of_the_socket_diagnostics_is_read_through_proc_net_tcp(
    answer: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bound_to_a_free_port(socket.create_server) as server:
        port = server.getsockname()[1]
        found: list[set[str]] = []
        with netlink_answered_by([answer], monkeypatch):
            asking = threading.Thread(target=lambda: found.append(listening_inodes(port)), daemon=True)
            asking.start()
            asking.join(HANG)
        assert found == [listed_in_proc_net(port)] and len(found[0]) == 1, "the malformed answer hung or was believed"


def test_socket_diagnostics_that_never_answer_are_read_through_proc_net_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    with bound_to_a_free_port(socket.create_server) as server:
        port = server.getsockname()[1]
        found: list[set[str]] = []
        with netlink_answered_by([], monkeypatch):
            asking = threading.Thread(target=lambda: found.append(listening_inodes(port)), daemon=True)
            asking.start()
            asking.join(HANG)
        assert found == [listed_in_proc_net(port)] and len(found[0]) == 1, "waited for an answer for ever"
