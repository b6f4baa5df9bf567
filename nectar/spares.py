"""A worker's spare attempt processes: forked ahead of work while runs are being claimed, none while idle.

A spare is a child forked from the worker before it has a run: it sets itself up (what an attempt needs before
it knows its run: its luigi build, its registry connection, the chain its run will likely need), says so with one
byte on its socket (*ready*; which byte is its worker's business: :attr:`Spare.said`), then waits there for the run.
:class:`Spares` keeps them:

- **how many**: none at start, and none once ``idle_after`` seconds have passed since runs were last wanted (a
  claim, or a queued run seen with no spare ready); meanwhile :data:`AHEAD` per slot of the worker, so that
  however many slots a reap frees at once, each finds a spare that is ready, and no claim waits on a fork or a
  setup;
- **which one a claim takes**: a ready one (:meth:`Spares.ready`), the oldest first; one whose setup has not
  finished is waited for (its socket wakes the worker's loop: :meth:`Spares.fds`), never handed a run. A spare
  that died shows on its socket too (the end of the stream, not its byte): it is reaped and never chosen;
- **when they are forked**: one per pass of the worker's loop, after its claims, so a fork never stands between
  a free slot and its run; after a spare died before it was ready (its setup failed), not before
  :data:`FIRST_BACKOFF` seconds, doubled at each such death up to :data:`MAX_BACKOFF`, until one is ready again.

Each spare's socket is a descriptor the worker's loop sleeps on (:meth:`Spares.fds`): it wakes when one is ready
or dies.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nectar import lifeline, wakeup

#: what a spare sends once it is set up, unless its ``prepare`` says otherwise
READY = b"r"
#: spares kept per slot while runs are claimed: a spare's fork and setup take about as long as a trivial run (~50-150
#: ms on 2 loaded cores), so with one per slot, 107-142 of 400 claims in a row waited for one to be ready; with
#: two, 1-4 of 400
AHEAD = 2
#: seconds before a spare is forked again after one died before it was ready, doubled at each such death
FIRST_BACKOFF = 0.1
#: the longest wait before forking again while spares keep dying before they are ready
MAX_BACKOFF = 5.0


@dataclass
class Spare:
    """A forked child waiting for its run on ``channel`` (the worker's end of their socket pair)."""

    pid: int
    channel: socket.socket
    ready: bool = False
    #: the byte it sent once set up
    said: bytes = b""
    #: what its worker noted of it when it was forked
    tag: Any = None


class Spares:
    """The worker's spares: ``prepare`` runs in each as it starts, and answers what it made and the byte that says
    the spare is ready (:attr:`Spare.said`); ``execute`` runs with the run's bytes and what ``prepare`` made once it
    has one, and returns the spare's exit code."""

    def __init__(
        self,
        prepare: Callable[[], tuple[Any, bytes]],
        execute: Callable[[bytes, Any], int],
        idle_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prepare = prepare
        self._execute = execute
        self.idle_after = idle_after
        self._clock = clock
        #: oldest first
        self.spares: list[Spare] = []
        #: when runs were last wanted (None: never since start)
        self._wanted_at: float | None = None
        self._wanted_now = False
        #: seconds to wait after a spare died being set up (0: none died since one was last ready), and until when
        self._backoff = 0.0
        self._fork_after = 0.0

    def __len__(self) -> int:
        return len(self.spares)

    def wanted(self) -> None:
        """Runs are being claimed (or wait for a spare): keep spares now and for the next ``idle_after`` seconds."""
        self._wanted_at = self._clock()
        self._wanted_now = True

    @property
    def busy(self) -> bool:
        """Whether spares are kept: runs were wanted since the last :meth:`keep`, or less than ``idle_after``
        seconds ago."""
        return self._wanted_now or (self._wanted_at is not None and self._clock() - self._wanted_at < self.idle_after)

    def ready(self) -> Spare | None:
        """The oldest spare whose setup has finished (the dead ones reaped on the way), or None."""
        self._look()
        return next((spare for spare in self.spares if spare.ready), None)

    def fds(self) -> list[int]:
        """The spares' sockets: one becomes readable when its spare is ready, or dies."""
        return [spare.channel.fileno() for spare in self.spares]

    def _look(self) -> None:
        """Read what the spares said, without waiting: being set up, that they are ready; ready (they say nothing
        more), that they died (the end of the stream)."""
        if not self.spares:
            return
        by_fd = {spare.channel.fileno(): spare for spare in self.spares}
        for fd in wakeup.readable(by_fd, 0.0):
            spare = by_fd[fd]
            try:
                said = spare.channel.recv(1)
            except OSError:
                said = b""
            if said and not spare.ready:
                spare.ready, spare.said = True, said
                self._backoff = 0.0
            else:  # the end of the stream: it died
                if not spare.ready:  # in its setup: the next may die the same way, fork it later
                    self._backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, 2 * self._backoff))
                    self._fork_after = self._clock() + self._backoff
                self._drop(spare)

    def take(self, spare: Spare) -> None:
        """``spare`` is no longer one: its run was claimed in its name."""
        self.spares.remove(spare)

    def keep(self, slots: int) -> Spare | None:
        """Fork a spare if fewer than wanted (one per call), or let the extra ones go: :data:`AHEAD` per slot while
        runs are wanted, none after ``idle_after`` seconds without. The dead ones are reaped first, every slot busy
        or not (a claim looks only when a slot is free): none stays a zombie counted among the spares. Answers the
        spare forked, if one was."""
        self._look()
        want = AHEAD * slots if self.busy else 0
        self._wanted_now = False
        forked = None
        if len(self.spares) < want and self._clock() >= self._fork_after:
            forked = self._fork()
            self.spares.append(forked)
        while len(self.spares) > want:  # the newest first: the oldest are the likeliest to be ready
            self._drop(self.spares[-1])
        return forked

    def close(self) -> None:
        """Let every spare go (each exits when its socket closes) and wait for them."""
        while self.spares:
            self._drop(self.spares[-1])

    def _drop(self, spare: Spare) -> None:
        """Let ``spare`` go: a ready one exits when its socket closes; one still being set up (which may wait on
        luigid or the registry for long) is killed: no run was claimed in its name, and the loop must not wait."""
        self.spares.remove(spare)
        spare.channel.close()
        try:
            if not spare.ready:
                os.kill(spare.pid, signal.SIGKILL)  # our child, not reaped yet: its pid cannot be another's
            os.waitpid(spare.pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass

    def _fork(self) -> Spare:
        ours, theirs = socket.socketpair()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the spare
            wakeup.no_signals()  # its signals are its own, not its worker's wake-ups
            # what it shares with the worker (luigi, boto3, nectar) leaves the collector's sight: its collections
            # scan only what the attempt allocates, and do not write to (copy) the pages it shares with the worker
            gc.freeze()
            code = 1
            try:
                ours.close()
                for other in self.spares:
                    other.channel.close()  # or a sibling would not see its socket close with the worker's end
                os.setpgid(0, 0)  # its own group: cancelling kills the task's subprocesses too
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # an attempt's lease makes it "requeue and stop"
                lifeline.die_with_parent(parent)  # SIGTERM if the worker dies, even by SIGKILL
                prepared, said = self._prepare()
                try:
                    theirs.sendall(said)
                    given = _read_all(theirs)
                except OSError:  # let go while it was being set up
                    given = b""
                if not given:  # the worker stopped (or died), or let this spare go, before there was a run for it
                    os._exit(0)
                code = self._execute(given, prepared)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        return Spare(pid, ours)


def freeze_held() -> None:
    """What the worker holds now (its imports, done before its first spare) leaves its collector's sight for good:
    a full collection of the worker no longer scans it, which took 20-40 ms on the claims' path (once in a few
    hundred runs) and wrote to every page its spares share with it (~4,000 copied). Collected first: what it
    freezes is never freed."""
    gc.collect()
    gc.freeze()


def hand_over(spare: Spare, given: bytes) -> None:
    """Send ``spare`` its run and close its socket; OSError if it is gone."""
    try:
        spare.channel.sendall(given)
    finally:
        spare.channel.close()


def _read_all(channel: socket.socket) -> bytes:
    chunks = []
    while chunk := channel.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
