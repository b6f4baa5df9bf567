"""Whether a TCP port is free to listen on, and which processes listen on it (Linux ``/proc``)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from nectar.errors import NectarError

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


class PortInUse(NectarError):
    """A port a process must listen on is taken; the message names it and its holder."""


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address, IPv4 or IPv6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(fields[9])
    return inodes


def listeners(port: int) -> set[int]:
    """Pids of the processes (that this user may look into) holding a socket that listens on ``port``."""
    sockets = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    found: set[int] = set()
    if not sockets:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in sockets:
                    found.add(int(entry))
                    break
            except OSError:
                continue
    return found


def command_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(arg.decode(errors="replace") for arg in argv if arg)[:200] or "?"


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def describe_holder(port: int) -> str:
    """Who listens on ``port``: ``pid 123 (its command)``, or what can be said when that is not visible.

    Of processes sharing the socket (gunicorn's master and its workers) only the first holder is named.
    """
    holders = listeners(port)
    pids = sorted(pid for pid in holders if parent_of(pid) not in holders)
    if pids:
        return ", ".join(f"pid {pid} ({command_of(pid)})" for pid in pids)
    return "another process (not one this user can see)" if listening_inodes(port) else "another process"


def ensure_free(host: str, port: int, what: str) -> None:
    """Raise :class:`PortInUse` naming ``port`` (``what`` listens there) and its holder, if it cannot be bound.

    The probe binds as gunicorn and luigid do (``SO_REUSEADDR``), so a port left in TIME_WAIT by a
    process that just stopped counts as free, as it is for them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise PortInUse(f"cannot listen on {host}:{port} for {what}: {exc.strerror}") from exc
            raise PortInUse(f"port {port} ({what}) is in use by {describe_holder(port)}") from exc
