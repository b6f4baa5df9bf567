"""Whether a TCP port is free to listen on, and which sockets and processes listen on it (Linux: the kernel's socket
diagnostics, ``/proc``)."""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from nectar.errors import NectarError
from nectar.lifeline import SUPERVISOR_VAR

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp
# the kernel's socket diagnostics (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h, TCP's states)
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
NLMSG_HDRLEN = 16
#: seconds a sock_diag dump may take (the kernel's takes ~0.03 ms): a socket that accepts the request and never
#: answers (a sandbox's) is then read through ``/proc/net/tcp``
DIAG_TIMEOUT = 2.0


class PortInUse(NectarError):
    """A port a process must listen on is taken; the message names it and its holder."""


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port``, IPv4 or IPv6, asked of the kernel's socket diagnostics (what
    ``ss -l`` asks: only listening sockets are sent, ~0.03 ms, where ``/proc/net/tcp`` prints every connection, ~6 ms
    for the ~3,000 a test session leaves in TIME-WAIT); :func:`listed_in_proc_net`'s where netlink is refused, the
    dump fails, is not answered within :data:`DIAG_TIMEOUT` or is malformed."""
    found: set[str] = set()
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(DIAG_TIMEOUT)
            for family in (socket.AF_INET, socket.AF_INET6):
                # inet_diag_req_v2: family, protocol, no extension, pad, states; an empty socket id (a dump)
                request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
                header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                diag.sendall(header + request)
                found |= _diag_inodes(diag, port)
    except (OSError, struct.error):  # a timeout is an OSError; a message cut short, a struct.error
        return listed_in_proc_net(port)
    return found


def _diag_inodes(diag: socket.socket, port: int) -> set[str]:
    """The inodes of the sockets on ``port`` in a dump of inet_diag_msg's, read until its end."""
    found: set[str] = set()
    while True:
        data = diag.recv(65536)
        offset = 0
        while offset < len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < NLMSG_HDRLEN:  # not even its header: the next would be read at the same place for ever
                raise struct.error(f"a netlink message of {length} bytes")
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                # each carries an error number after its header: a dump the kernel could not make (no diagnostics
                # for TCP: ``tcp_diag`` not loaded) ends with -ENOENT, not with nothing found
                (error,) = struct.unpack_from("=i", data, offset + NLMSG_HDRLEN) if length >= 20 else (0,)
                if error or kind == NLMSG_ERROR:
                    raise OSError(-error, f"sock_diag answered with an error: {os.strerror(-error)}")
                return found
            # inet_diag_msg: family, state, timer, retrans, then the socket id (source port first, big-endian) ...
            (sport,) = struct.unpack_from("!H", data, offset + NLMSG_HDRLEN + 4)
            (inode,) = struct.unpack_from("=I", data, offset + NLMSG_HDRLEN + 68)  # ... and after it, the inode
            if sport == port:
                found.add(str(inode))
            offset += (length + 3) & ~3


def tcp_sockets() -> Iterator[list[str]]:
    """The fields of each TCP socket (IPv4, then IPv6) as ``/proc/net/tcp`` lists it: its local address (1), its
    peer's (2), its state (3), its inode (9); a table that cannot be read is skipped."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                yield fields


def listed_in_proc_net(port: int) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address, IPv4 or IPv6) as ``/proc/net/tcp`` lists them."""
    return {
        fields[9] for fields in tcp_sockets() if fields[3] == LISTEN and int(fields[1].rpartition(":")[2], 16) == port
    }


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


def held_by(port: int, pids: Iterable[int]) -> bool | None:
    """Whether the socket listening on TCP ``port`` is held by one of ``pids``: True; by another process only: False;
    None while nothing listens there. One query to the kernel and a look at the descriptors of ``pids``, not a walk
    of every process (:func:`listeners`)."""
    held = listening_inodes(port)
    if not held:
        return None
    return any(held & socket_inodes(pid) for pid in pids)


def listeners(port: int) -> set[int]:
    """Pids of the processes (that this user may look into) holding a socket that listens on ``port``."""
    sockets = listening_inodes(port)
    found: set[int] = set()
    if not sockets:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit() and socket_inodes(int(entry)) & sockets:
            found.add(int(entry))
    return found


def environ_has(pid: int, entry: str) -> bool:
    """Whether the environment process ``pid`` started with holds ``entry`` (``NAME=value``); False where it cannot be
    read (gone, another user's)."""
    return entry.encode() in _environ(pid)


def _environ(pid: int) -> list[bytes]:
    """The entries (``NAME=value``) of the environment process ``pid`` started with; none where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


#: what a part of a ``nectar serve`` is, by a piece of its command (:mod:`nectar.supervisor`'s parts), first match
PARTS = (
    ("nectar.cli worker", "a worker"),
    ("gunicorn", "an API process (gunicorn)"),
    ("luigid", "luigid"),
)
#: characters of a command a refusal names at most (where it is no part of a serve)
COMMAND_SHOWN = 60


def name_of(pid: int) -> str:
    """What process ``pid`` is, short, for a line that names it: a part of a ``nectar serve`` (its environment names
    its supervisor) by its role and that serve (its pid, and whether it is gone: the part of a serve killed -9 left
    holding its port); any other by its command's first words (at most :data:`COMMAND_SHOWN` characters: a
    ``python -c`` prelude is no name)."""
    command = command_of(pid)
    prefix = f"{SUPERVISOR_VAR}=".encode()
    supervisor = next((entry[len(prefix) :].decode() for entry in _environ(pid) if entry.startswith(prefix)), "")
    if supervisor.isdigit():
        role = next((name for piece, name in PARTS if piece in command), "a part")
        gone = "" if started_before(int(supervisor), pid) else ", gone"
        return f"{role} of a nectar serve (pid {supervisor}{gone})"
    if len(command) <= COMMAND_SHOWN:
        return command
    shown = command[:COMMAND_SHOWN]
    return (shown.rpartition(" ")[0] or shown) + " …"


def command_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    # one line whatever its arguments hold (a ``python -c`` script's newlines): the refusal that names it is one line
    return " ".join(" ".join(arg.decode(errors="replace").split()) for arg in argv if arg)[:200] or "?"


def parent_of(pid: int) -> int | None:
    return _stat_field(pid, 1)


def started_before(first: int, then: int) -> bool:
    """Whether process ``first`` is there and started no later than process ``then`` (their start times since boot,
    ``/proc`` stat's 22nd field): a serve's supervisor named by a part that outlived it is gone though its pid is
    taken again, by a process that started after the part did. Where ``then`` is gone too, ``first`` being there.
    A process that ended and is not yet reaped (a zombie: a serve killed -9 whose parent has not waited for it) is
    not there: only its exit status is."""
    fields = _stat_fields(first) or [ENDED[0]]
    if fields[0] in ENDED:
        return False
    first_start = _number(fields, 19)
    then_start = _stat_field(then, 19)
    return first_start is not None and (then_start is None or first_start <= then_start)


#: the states of ``/proc/<pid>/stat`` of a process that has ended (zombie, dead): its pid is held, it runs nothing
ENDED = ("Z", "X", "x")


def _stat_field(pid: int, index: int) -> int | None:
    """Field ``index`` of process ``pid``'s ``/proc`` stat (see :func:`_stat_fields`) as a number; None where it is
    gone."""
    fields = _stat_fields(pid)
    return None if fields is None else _number(fields, index)


def _number(fields: list[str], index: int) -> int | None:
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Process ``pid``'s ``/proc`` stat fields, counted from its state (0) after the command's name (which may hold
    spaces and parentheses); None where it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def describe_holder(port: int) -> str:
    """Who listens on ``port``: ``pid 123 (its command)``, or what can be said when that is not visible.

    Of processes sharing the socket (gunicorn's master and its workers) only the first holder is named.
    """
    holders = listeners(port)
    pids = sorted(pid for pid in holders if parent_of(pid) not in holders)
    if pids:
        return ", ".join(f"pid {pid} ({name_of(pid)})" for pid in pids)
    return "another process (not one this user can see)" if listening_inodes(port) else "another process"


def ensure_apart(first: tuple[str, int, str], second: tuple[str, int, str]) -> None:
    """Raise :class:`PortInUse` if two listeners this process starts, each ``(host, port, what)``, would share a port:
    the same port on the same address, on a wildcard (``0.0.0.0``, ``::``) or on a host name (which may be either).
    Each would pass :func:`ensure_free` alone, and whichever bound second would fail or be answered for by the other.
    """
    (host, port, what), (other_host, other_port, other_what) = first, second
    if port != other_port:
        return
    literals = [_ip_literal(each) for each in (host, other_host)]
    wildcards = ("0.0.0.0", "::")
    if None in literals or any(each in wildcards for each in literals) or literals[0] == literals[1]:
        raise PortInUse(f"{what} and {other_what} are both port {port}: give each its own")


def _ip_literal(host: str) -> str | None:
    """``host`` written the one way an IP address is (``::0`` as ``::``), None for a host name."""
    import ipaddress  # only where two ports are the same: not on every start's path

    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def in_use(port: int, what: str) -> PortInUse:
    """The one refusal of a taken port: ``port`` (``what`` listens there) and its holder, in one line."""
    return PortInUse(f"port {port} ({what}) is in use by {describe_holder(port)}")


def ensure_free(host: str, port: int, what: str) -> None:
    """Raise :class:`PortInUse` naming ``port`` (``what`` listens there) and its holder, if it cannot be bound.

    The probe binds as gunicorn and luigid do (``SO_REUSEADDR``), so a port left in TIME_WAIT by a
    process that just stopped counts as free, as it is for them.
    """
    listen(host, port, what, backlog=None).close()


def bare_address(host: str) -> str:
    """``host`` as a bind takes it: an IPv6 address given in brackets (``[::1]``, as a URL writes it) without them."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def listen(host: str, port: int, what: str, backlog: int | None = 2048) -> socket.socket:
    """A TCP socket bound to ``host:port`` as gunicorn binds one (``SO_REUSEADDR``) and listening with gunicorn's
    default backlog (``backlog`` None: bound only), or :class:`PortInUse` as :func:`ensure_free` says it: the check
    and the bind at once, where the process that serves the port can be given the socket (``nectar api``)."""
    address = bare_address(host)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    bound = socket.socket(family, socket.SOCK_STREAM)
    try:
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound.bind((address, port))
        if backlog is not None:
            bound.listen(backlog)
    except OSError as exc:
        bound.close()
        if exc.errno != errno.EADDRINUSE:
            raise PortInUse(f"cannot listen on {host}:{port} for {what}: {exc.strerror}") from exc
        raise in_use(port, what) from exc
    return bound


#: the first descriptor of sockets handed over as systemd's socket activation hands them (sd_listen_fds(3))
LISTEN_FDS_START = 3
#: the variable naming the descriptor a listening socket is handed on to the process it names (:func:`hand_over`)
HANDED_FD = "NECTAR_LISTEN_FD"


def hand_over(listener: socket.socket) -> tuple[int, dict[str, str]]:
    """``listener``'s descriptor, made inheritable, for the process this one starts (``pass_fds``) or becomes
    (``exec``) to serve its port on (:func:`take_handed`), and the variable that says so: the check and the bind
    are one (:func:`listen`), and no other program takes the port before its server has it."""
    fd = listener.detach()
    os.set_inheritable(fd, True)
    return fd, {HANDED_FD: str(fd)}


def take_handed() -> None:
    """In the server a socket was handed to (:func:`hand_over`; gunicorn's master, before it starts): that socket
    becomes the one systemd's socket activation hands, descriptor :data:`LISTEN_FDS_START` with ``LISTEN_FDS=1`` and
    ``LISTEN_PID`` this process, which gunicorn takes instead of binding its own, and removes from its environment
    (its workers, and a master re-executed by USR2, see none of it). Nothing where none was handed."""
    fd = os.environ.pop(HANDED_FD, None)
    if fd is None:
        return
    if int(fd) != LISTEN_FDS_START:
        os.dup2(int(fd), LISTEN_FDS_START)  # free: the starter handed nothing else on it (off_the_handed_descriptor)
        os.close(int(fd))
    os.environ.update({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())})


def off_the_handed_descriptor(fd: int) -> int:
    """``fd``, or a copy of it above :data:`LISTEN_FDS_START` where it is that descriptor (``fd`` closed then): for
    a descriptor handed beside a socket (:func:`hand_over`), which :func:`take_handed` moves there."""
    if fd != LISTEN_FDS_START:
        return fd
    import fcntl  # only where it is needed: not on every start's path

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, LISTEN_FDS_START + 1)
    os.close(fd)
    return moved


def binding(main: Callable[[], object], what: str) -> None:
    """``main()``, a server that binds its port as it starts (luigid, its ``--port`` among its arguments); its bind
    refused as the port is in use ends the process with status 2 and the check's own line (:func:`in_use`: the port,
    ``what`` and its holder), as ``nectar scheduler``'s check before its exec says it, not a traceback. Under
    ``nectar serve`` (``NECTAR_SUPERVISOR_PID``) with status 1 and one line saying so (``what``: the strerror): serve's
    own line naming the port's holder follows where it finds one (:meth:`nectar.supervisor.Supervisor.
    refuse_a_taken_port`); a holder gone by the time it looks, or one it takes for its own, left ``luigid exited with
    code 1`` alone, no cause said."""
    try:
        main()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if os.environ.get(SUPERVISOR_VAR):
            print(f"{what}: cannot listen: {exc.strerror}", file=sys.stderr)
            raise SystemExit(1) from None
        port = _flag(sys.argv, "--port")
        said = in_use(int(port), what) if port and port.isdigit() else f"{what}: cannot listen: {exc.strerror}"
        print(f"nectar: {said}", file=sys.stderr)
        raise SystemExit(2) from None


def _flag(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``--port 8082`` or ``--port=8082``; the last one given), or None."""
    found = None
    for at, arg in enumerate(argv):
        if arg == flag and at + 1 < len(argv):
            found = argv[at + 1]
        elif arg.startswith(f"{flag}="):
            found = arg.partition("=")[2]
    return found
