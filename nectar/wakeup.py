"""What wakes a sleeping worker, as file descriptors for one ``poll()``: a file being written, a child exiting.

A worker's loop has four things to wait for: a run queued (a commit to the registry: SQLite's writes a file once it
is visible, :meth:`nectar.registry.sqlite.SQLiteRunStore.wait_for_work`), an attempt's process exiting (its slot is
free), a spare saying it is ready, a signal (a stop). Each is a readable descriptor here, so the loop sleeps in one
``poll()`` of them all and wakes at the event, not at its next look (Linux: ``inotify(7)``, ``pidfd_open(2)``;
elsewhere :func:`changes` and :func:`exits` answer None and the caller looks again after a short sleep).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
from collections.abc import Iterable
from pathlib import Path

#: ``inotify(7)``: a file in the watched folder was written
IN_MODIFY = 0x2
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC


def changes(path: Path) -> int | None:
    """A descriptor that becomes readable once the file at ``path`` (or a file in the folder at ``path``) is written
    (drain it with :func:`drain`), or None where the kernel cannot say (not Linux, or out of inotify watches)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
        os.close(fd)
        return None
    return fd


def exits(pid: int) -> int | None:
    """A descriptor that becomes readable once the child ``pid`` has exited (it stays to be reaped), or None where
    the kernel cannot say (not Linux 5.3 or later); close it once the child is reaped."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def stat_of(pid: int) -> int | None:
    """A descriptor of the child ``pid``'s ``/proc`` stat, for :func:`main_thread_exited` to read again and again
    (one ``pread`` each: the path is looked up once per process, not once per look), or None where there is none.
    Close it once the child is reaped."""
    try:
        return os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def close_all(*fds: int | None) -> None:
    """Close each of a child's descriptors made here (:func:`exits`, :func:`stat_of`) that was made (not None)."""
    for fd in fds:
        if fd is not None:
            os.close(fd)


def main_thread_exited(stat: int | None) -> bool:
    """Whether the main thread of the child whose ``/proc`` stat ``stat`` reads (:func:`stat_of`) has exited (it is a
    zombie); False where it cannot say. A process killed while it has other threads is a zombie before the last of
    them has closed its descriptors: its sockets read the end of the stream, and :func:`exits` is readable, only once
    they all have."""
    if stat is None:
        return False
    try:
        line = os.pread(stat, 512, 0)  # "pid (name) state ...": a name is at most 64 bytes
    except OSError:  # reaped: not a child any more
        return False
    return line.rpartition(b")")[2].split(maxsplit=1)[:1] in ([b"Z"], [b"X"])


#: the :func:`signals` descriptor open now, -1 for none (closed, and forgotten, by :func:`no_signals`, in the process
#: that made it or a child forked from it), and the end of its pipe signals are written to
_made = -1
_written = -1


def signals() -> int | None:
    """A descriptor that becomes readable when this process receives a signal (``signal.set_wakeup_fd``): Python
    runs a signal's handler between two bytecodes and retries a ``poll()`` it interrupted, so a sleep would
    otherwise last its whole timeout after a SIGTERM. None off the main thread, where Python does not allow it.
    Drain it with :func:`drain`; give it up (close it) with :func:`no_signals`, in the process that made it or a child
    forked from it."""
    global _made, _written
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    try:
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        os.close(read)
        os.close(write)
        return None
    _made, _written = read, write
    return read


def is_signals_pipe(fd: int) -> bool:
    """Whether ``fd``, a process's wakeup descriptor, is the one :func:`signals` set (without a warning on a full
    buffer: a signal that finds its pipe full is one already written)."""
    return fd >= 0 and fd == _written


def no_signals() -> None:
    """Signals no longer written to a :func:`signals` descriptor; both ends of its pipe closed (this process's copies:
    the worker's that made it, at its stop; a forked child's, a spare's, never read there) and forgotten. A process
    that made it and closed it but remembered its number had a later child close that number again: by then another
    descriptor of the parent's (a pipe the child was to write its answer to: the supervisor's check of the registry's
    schema, which then said nothing), the number being free in the parent and taken again. Only this module's pipe is
    closed, not whatever the process's wakeup descriptor is: in a process :mod:`nectar.main_signals` watches, that is
    the watch's, which giving the descriptor up sets again."""
    global _made, _written
    read, written, _made, _written = _made, _written, -1, -1
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread: Python refuses, and the pipe stays set (its write end left open)
        written = -1
    for fd in (read, written):
        if fd >= 0:
            os.close(fd)


#: bytes a :func:`drain` asks for in one ``read``
DRAIN_READ = 65536
#: room left in a :func:`drain`'s read that shows the descriptor had no more to give: a pipe's read returns all it
#: holds up to the size asked, an ``eventfd``'s its 8 bytes (its count, reset), an inotify descriptor's every event
#: that fits (one is at most 16 bytes and a name of 256)
_DRAINED_ROOM = 4096


def drain(fd: int) -> bool:
    """Read what a non-blocking descriptor holds (the events of :func:`changes`, a pipe's bytes, an ``eventfd``'s
    count), so that it sleeps again: whether it held anything. A read that left room in its buffer read it all: no
    second read to hear it is empty (``EAGAIN``), one system call fewer on each wake of a worker by a run queued
    (what is written after the read makes the descriptor readable again, as after an empty read)."""
    held = False
    try:
        while True:
            got = len(os.read(fd, DRAIN_READ))
            held = held or got > 0
            if got <= DRAIN_READ - _DRAINED_ROOM:
                break
    except BlockingIOError:
        pass
    return held


def readable(fds: Iterable[int], timeout: float | None) -> list[int]:
    """Those of ``fds`` readable (or closed at the other end) within ``timeout`` seconds (None: for as long as it
    takes); [] if none was. With no descriptor, a sleep of ``timeout``. In ``poll()``, woken by input alone: a thread
    waiting in a blocking ``recv`` of a Unix stream socket is also woken each time its peer reads what it wrote (the
    kernel frees the space and wakes the writer's queue, where the reader waits, whatever it waits for), to find
    nothing and sleep again. A signal's handler runs meanwhile (its exception raised here)."""
    poller = select.poll()  # not select.select: a descriptor past 1023 would make it raise
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(None if timeout is None else max(0.0, timeout) * 1000)]
