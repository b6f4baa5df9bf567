"""Processes seen through Linux's ``/proc``: children, descendants, liveness, CPU time, read calls, command lines,
pending signals, environments, TCP connections and listening sockets."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from nectar.ports import listening_inodes

# the kernel's socket diagnostics (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h, TCP's states)
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    """Children of ``pid``, their children, and so on."""
    found, todo = [], children(pid)
    while todo:
        kid = todo.pop()
        found.append(kid)
        todo += children(kid)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _cpu_ticks(pid: int, reaped: bool) -> int:
    """Clock ticks of CPU ``pid`` used, user and system (utime + stime), with ``reaped`` those of the children it
    waited for too (cutime + cstime), from its ``stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in fields[11 : 15 if reaped else 13])


def cpu_seconds(pid: int) -> float:
    """The CPU time ``pid`` has used so far, user and system, in seconds (from its ``stat``: utime + stime)."""
    return _cpu_ticks(pid, reaped=False) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds used by ``pid``, by the children it reaped (``cutime``/``cstime``) and by its descendants alive (a
    gunicorn's workers, a worker's attempt processes and spares); one exiting meanwhile is counted once reaped."""
    used = _cpu_ticks(pid, reaped=True) / os.sysconf("SC_CLK_TCK")
    for child in descendants(pid):
        try:
            used += cpu_seconds(child)
        except FileNotFoundError:  # exiting now: in its parent's cutime once reaped
            pass
    return used


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy so far, every core and process (``/proc/stat``: all but idle and
    iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> float:
    """CPU seconds the live threads of ``pid`` have used, to the nanosecond (``schedstat``; ``stat`` counts ticks).

    :raises ProcessLookupError: ``pid`` is gone (no thread left to read), never a sum of nothing.
    """
    times = thread_times(pid)
    if not times:
        raise ProcessLookupError(f"process {pid} is gone")
    return sum(ran for ran, _ in times.values()) / 1e9


def read_calls(pids: list[int]) -> dict[int, int]:
    """The read system calls each of ``pids`` has made so far (``syscr`` of /proc/<pid>/io: SQLite reads a page of
    its file with one, gunicorn a request with another); a process gone is left out."""
    found = {}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/io").read_text().splitlines()
        except FileNotFoundError:
            continue
        found[pid] = next(int(line.split()[1]) for line in lines if line.startswith("syscr:"))
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid``, its arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def send(pid: int, signum: int) -> None:
    """Signal ``pid``, if it is still there to be signalled."""
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def pending(pid: int) -> set[int]:
    """The signals sent to ``pid`` and not yet delivered (to a stopped process: until it is continued); empty once
    it is gone."""
    masks = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("SigPnd:", "ShdPnd:")):
                masks |= int(line.split()[1], 16)
    except OSError:
        return set()
    return {signum for signum in range(1, 65) if masks >> (signum - 1) & 1}


def carrying(var: str, value: str) -> list[int]:
    """Every live process but this one whose environment sets ``var`` to ``value``."""
    needle = f"{var}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open (none once it is gone; a descriptor closed meanwhile is
    skipped)."""
    found: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP socket whose peer is on ``port``: a client's connection to a server on
    ``port``, or a server's connection from a client whose own end is ``port`` (a socket gone meanwhile is skipped)."""
    sockets = socket_inodes(pid)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in sockets and int(fields[2].rpartition(":")[2], 16) == port:
                return True
    return False


def listening(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port``, IPv4 or IPv6, asked of the kernel's socket diagnostics (what
    ``ss -l`` asks: only listening sockets are sent, where ``/proc/net/tcp`` prints every connection, ~6 ms for the
    ~3,000 a test session leaves in TIME-WAIT); ``/proc/net/tcp``'s where netlink is refused."""
    found: set[str] = set()
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            for family in (socket.AF_INET, socket.AF_INET6):
                # inet_diag_req_v2: family, protocol, no extension, pad, states; an empty socket id (a dump)
                request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
                header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                diag.sendall(header + request)
                found |= _diag_inodes(diag, port)
    except OSError:
        return listening_inodes(port)
    return found


def _diag_inodes(diag: socket.socket, port: int) -> set[str]:
    """The inodes of the sockets on ``port`` in a dump of inet_diag_msg's, read until its end."""
    found: set[str] = set()
    while True:
        data = diag.recv(65536)
        offset = 0
        while offset < len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                raise OSError(f"sock_diag answered with an error: {data[offset : offset + length]!r}")
            # inet_diag_msg: family, state, timer, retrans, then the socket id (source port first, big-endian) ...
            (sport,) = struct.unpack_from("!H", data, offset + 16 + 4)
            (inode,) = struct.unpack_from("=I", data, offset + 16 + 68)  # ... and after it, the inode
            if sport == port:
                found.add(str(inode))
            offset += (length + 3) & ~3


def listens(pid: int, port: int) -> bool | None:
    """Whether the socket listening on TCP ``port`` is held by ``pid`` or one of its descendants (gunicorn's master
    and workers, ``nectar serve``'s parts): True; held by another process only: False; None while nothing listens
    there."""
    held = listening(port)
    if not held:
        return None
    return any(held & socket_inodes(member) for member in (pid, *descendants(pid)))


def thread_times(pid: int) -> dict[int, tuple[int, int]]:
    """Of each live thread of ``pid``: nanoseconds it has run and nanoseconds it has waited for a core while
    runnable (``schedstat``'s first two fields); a thread gone meanwhile is left out."""
    found: dict[int, tuple[int, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            ran, waited = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        found[int(tid)] = (int(ran), int(waited))
    return found
