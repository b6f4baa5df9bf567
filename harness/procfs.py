"""Processes seen through Linux's ``/proc``: children, descendants, liveness, CPU time, read calls, command lines,
pending signals, environments, TCP connections and the listening sockets each holds (the kernel is asked which
sockets listen where by :mod:`nectar.ports`, which ``nectar serve`` shares)."""

from __future__ import annotations

import os
from pathlib import Path

from nectar.ports import held_by, socket_inodes, tcp_sockets


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


def state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``R``, ``S``, ``T``, ``Z``...), or None where it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    return state(pid) not in (None, "Z", "X")


def stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (``T``; ``t`` under a tracer) or has exited, ``pid`` gone
    included. A process sent SIGSTOP runs on until the kernel has one of its threads act on it, and acts first on a
    signal of a lower number sent meanwhile (SIGTERM: 15, SIGUSR2: 12, SIGSTOP: 19): its handler takes it (Python's
    only notes it), and it is no longer pending once the process stops."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in threads:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] not in ("T", "t", "Z", "X"):
            return False
    return True


def _cpu_ticks(pid: int, reaped: bool, system: bool = False) -> int:
    """Clock ticks of CPU ``pid`` used, user and system (utime + stime; with ``system``, stime alone: the kernel's
    work for it), with ``reaped`` those of the children it waited for too (cutime + cstime), from its ``stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in fields[12 if system else 11 : 15 if reaped else 13 : 2 if system else 1])


def cpu_seconds(pid: int, system: bool = False) -> float:
    """The CPU time ``pid`` has used so far, user and system, in seconds (from its ``stat``: utime + stime); with
    ``system``, its system time alone (stime)."""
    return _cpu_ticks(pid, reaped=False, system=system) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int, system: bool = False) -> float:
    """CPU seconds used by ``pid``, by the children it reaped (``cutime``/``cstime``) and by its descendants alive (a
    gunicorn's workers, a worker's attempt processes and spares); one exiting meanwhile is counted once reaped. With
    ``system``, their system time alone."""
    used = _cpu_ticks(pid, reaped=True, system=system) / os.sysconf("SC_CLK_TCK")
    for child in descendants(pid):
        try:
            used += cpu_seconds(child, system)
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


def arguments(pid: int) -> str:
    """The arguments of ``pid`` after its program, joined by spaces ("" once it is gone): what tells a process's role
    by a word (``luigid``, ``worker``) where the program's path may hold the same word (a checkout in a folder named
    so: every process of it ran ``/…/luigid-work/.venv/bin/python``)."""
    try:
        return b" ".join(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:]).decode(errors="replace")
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


def connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP socket whose peer is on ``port``: a client's connection to a server on
    ``port``, or a server's connection from a client whose own end is ``port`` (a socket gone meanwhile is skipped)."""
    sockets = socket_inodes(pid)
    return any(fields[9] in sockets and int(fields[2].rpartition(":")[2], 16) == port for fields in tcp_sockets())


def listens(pid: int, port: int) -> bool | None:
    """Whether the socket listening on TCP ``port`` is held by ``pid`` or one of its descendants (gunicorn's master
    and workers, ``nectar serve``'s parts): True; held by another process only: False; None while nothing listens
    there."""
    return held_by(port, [pid, *descendants(pid)])


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
