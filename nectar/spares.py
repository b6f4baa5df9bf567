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
  that died shows on its socket too (the end of the stream, not its byte): it is reaped and never chosen; nor is
  one whose main thread has exited (killed, it is a zombie while its other threads still exit, its socket open);
- **when they are forked**: one per pass of the worker's loop, after its claims, so a fork never stands between
  a free slot and its run; after a forked spare died before it was ready (its setup failed; not a process back from
  its run: its death says nothing of a fork's setup, and no fork loop can come of it), not before
  :data:`FIRST_BACKOFF` seconds, doubled at each such death up to :data:`MAX_BACKOFF`, until one is ready again;
  the last one wanted not while the worker holds it back (``keep(hold=True)``: an attempt it just handed a run
  has not started its first step yet, and a fork and a spare's setup, ~10 ms of CPU, would compete with it on
  the path from claim to ``run()``).

A spare handed its run keeps its socket, one framed protocol both ways: the worker sends the run, its length first
(:func:`hand_over`; a spare that dies before it read it closes its socket with bytes unread, which its worker's end
reads as a reset, not the end of the stream: :data:`UNREAD`, the attempt never began; a process it forked then,
its socket held open or not, is killed with its process group: :func:`end_group`); the attempt says when its
first step starts (:data:`STARTED`: :func:`started`) and, if it ended its run cleanly and may take another (up to
``runs_per_process`` runs), that it ended, with its exit code (:data:`ENDED`: :func:`heard`), at once: its slot is
free while it looks at what its run left behind (:mod:`nectar.reuse`, a thread it may wait for). It then sets itself
up again and says it is ready, a spare once more (:meth:`Spares.returned`), or, if its run left something behind,
exits: its worker drops it as any spare that dies before it is ready (as it does if its run left a file open:
:func:`nectar.reuse.left_open`, looked at again once it set itself up). Else it exits at once, and its worker learns
of the end by its exit, as of any death.

Each spare's socket is a descriptor the worker's loop sleeps on (:meth:`Spares.fds`): it wakes when one is ready
or dies; while every slot is busy, only when a ready one dies (about one wake in three of a trivial run's was a spare
saying it was ready to a loop that could not use it yet).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import struct
import termios
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nectar import leases, lifeline, reuse, wakeup

#: what a spare sends once it is set up, unless its ``prepare`` says otherwise
READY = b"r"
#: what an attempt sends once its first step starts (:func:`started`)
STARTED = b"s"
#: what an attempt sends once it ended its run and stays, followed by its exit code (one byte)
ENDED = b"e"
#: what :func:`heard` answers of an attempt whose process closed its socket before it read its run (said by none)
UNREAD = b"u"
#: how the length of a run handed over is sent before it
_LENGTH = struct.Struct("!I")
#: the byte before a run handed over (:func:`hand_over`): whether its attempt says when its first step starts
_TELL, _QUIET = b"t", b"q"
logger = logging.getLogger(__name__)
#: in a spare handed its run: its end of the socket, until it says it started (None elsewhere)
_told: socket.socket | None = None
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
    #: what its worker noted of it when it was forked (or took it back)
    tag: Any = None
    #: the runs it executed before (it ended each cleanly, and stayed)
    runs_done: int = 0
    #: its process's ``/proc`` stat (:func:`nectar.wakeup.stat_of`) and exit (:func:`nectar.wakeup.exits`), each made
    #: once per process as a claim first needs it, and kept with it from run to run (None: not made yet); closed once
    #: it is let go or has exited (:meth:`close_handles`)
    stat: int | None = None
    exited: int | None = None

    def close_handles(self) -> None:
        """Close its process's descriptors (:attr:`stat`, :attr:`exited`): it is let go, or has exited."""
        wakeup.close_all(self.stat, self.exited)
        self.stat = self.exited = None


class Spares:
    """The worker's spares: ``prepare`` runs in each as it starts (and again after each run it stays for), and
    answers what it made and the byte that says the spare is ready (:attr:`Spare.said`); ``execute`` runs with the
    run's bytes and what ``prepare`` made once it has one, and returns the spare's exit code and whether its run
    ended by its own hand (only then may the process take another: at most ``runs_per_process`` in all, while its
    resident size is at most ``max_rss_mb``)."""

    def __init__(
        self,
        prepare: Callable[[], tuple[Any, bytes]],
        execute: Callable[[bytes, Any], tuple[int, bool]],
        idle_after: float,
        clock: Callable[[], float] = time.monotonic,
        runs_per_process: int = 1,
        max_rss_mb: int = 0,
        handed: Callable[[], Iterable[socket.socket]] = tuple,
        give_back: Callable[[str], None] | None = None,
    ) -> None:
        self._prepare = prepare
        self._execute = execute
        #: in a spare whose worker died before its attempt began: put back, uncounted, the runs claimed in the name
        #: given (its own as an attempt's holder), which no one else can tell began nowhere (None: nothing to do)
        self.give_back = give_back
        #: the worker's ends of the sockets of the spares it took (a spare forked later closes them: the one waiting
        #: at the other end must see the worker's end close, to exit)
        self._handed = handed
        self.idle_after = idle_after
        self.runs_per_process = runs_per_process
        self.max_rss_mb = max_rss_mb
        self._clock = clock
        #: oldest first
        self.spares: list[Spare] = []
        #: when runs were last wanted (None: never since start)
        self._wanted_at: float | None = None
        self._wanted_now = False
        #: seconds to wait after a spare died being set up (0: none died since one was last ready), and until when
        self._backoff = 0.0
        self._fork_after = 0.0
        #: the spares let go whose exit is yet to be reaped: a later pass reaps them, the loop never waits for one
        self._leaving: set[int] = set()
        #: whether :meth:`ready` read what the spares said since the loop's last :meth:`keep` (which then need not)
        self._looked = False

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
        """The oldest spare whose setup has finished and whose process has not exited (the dead ones reaped on the
        way), or None."""
        self._look()
        self._looked = True
        for spare in [spare for spare in self.spares if spare.ready]:
            if spare.stat is None:
                spare.stat = wakeup.stat_of(spare.pid)
            if not wakeup.main_thread_exited(spare.stat):
                return spare
            end_group(spare.pid)  # killed, and its socket not closed yet: its other threads are still exiting, or a
            self._drop(spare)  # process it forked holds it
        return None

    def fds(self, readiness: bool = True) -> list[int]:
        """The spares' sockets: one becomes readable when its spare is ready, or dies. Without ``readiness`` (no slot
        is free to take a spare), only those of the ready ones (they die): one becoming ready would wake a loop that
        cannot use it; it is read at the loop's next pass (a slot freed wakes it)."""
        return [spare.channel.fileno() for spare in self.spares if readiness or spare.ready]

    def _look(self) -> None:
        """Read what the spares said, without waiting: being set up, that they are ready; ready (they say nothing
        more), that they died (the end of the stream). Those let go that have exited since are reaped."""
        self._reap_left()
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
                if not spare.runs_done:  # one back from its run may exit of its own accord, leaving what its run left
                    end_group(spare.pid)  # as any attempt's process does
                if not spare.ready and not spare.runs_done:  # in its setup: the next fork may die the same way
                    self._backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, 2 * self._backoff))
                    self._fork_after = self._clock() + self._backoff
                self._drop(spare)

    def take(self, spare: Spare) -> None:
        """``spare`` is no longer one: its run was claimed in its name."""
        self.spares.remove(spare)

    def keep(self, slots: int, hold: bool = False) -> Spare | None:
        """Fork a spare if fewer than wanted (one per call), or let the extra ones go: :data:`AHEAD` per slot while
        runs are wanted, none after ``idle_after`` seconds without; with ``hold``, not the last one wanted. While
        runs are wanted, up to ``slots`` more are kept if processes take more than one run: those that came back
        from their run (:meth:`returned`) while the others waited, which the next claims take; of those still setting
        up again, one per slot counts among the wanted (more: a fork is made all the same). The dead ones are
        reaped first, every slot busy or not (a claim looks only when a slot is free): none stays a zombie counted
        among the spares (unless :meth:`ready` read them since the last call: what they said since, a death, wakes
        the loop's next sleep). Answers the spare forked, if one was."""
        if self._looked:
            self._reap_left()
        else:
            self._look()
        self._looked = False
        want = AHEAD * slots if self.busy else 0
        kept = want + slots if want and self.runs_per_process > 1 else want
        self._wanted_now = False
        forked = None
        if self._coming(slots) < (want - 1 if hold else want) and self._clock() >= self._fork_after:
            forked = self._fork()
            self.spares.append(forked)
        while len(self.spares) > kept:  # the newest first (the oldest are the likeliest to be ready), and of those
            self._drop(self._extra())  # back from their run, one still setting itself up again first
        return forked

    def _coming(self, slots: int) -> int:
        """The spares that count among those wanted: of those back from their run and setting up again, one per slot
        (each slot's last, ready again as the next run ends); more are slower to set up than runs to end (what their
        run left is waited for, their likely chain executed ahead), and no slot waits for them while a fork could be
        ready first."""
        again = sum(1 for spare in self.spares if spare.runs_done and not spare.ready)
        return len(self.spares) - again + min(again, slots)

    def short(self, slots: int) -> bool:
        """Whether fewer spares count than runs being claimed want (:meth:`keep`): a fork is wanted, held back while
        an attempt just handed its run has not started its first step. Else no fork waits for that start, and the
        attempt need not say it (:func:`hand_over`): its worker's loop is not woken for it, on the attempt's way to
        ``run()``."""
        return self._coming(slots) < AHEAD * slots

    def _extra(self) -> Spare:
        """The spare let go when more are kept than wanted: the newest of those back from their run that are not
        ready again yet, else the newest."""
        slow = [spare for spare in self.spares if spare.runs_done and not spare.ready]
        return slow[-1] if slow else self.spares[-1]

    def returned(
        self,
        pid: int,
        channel: socket.socket,
        runs_done: int,
        tag: Any = None,
        stat: int | None = None,
        exited: int | None = None,
    ) -> None:
        """The attempt process ``pid`` ended its run cleanly and stays (:data:`ENDED`): a spare again, ready once it
        says so on ``channel``; with the descriptors of its process (``stat``, ``exited``: :class:`Spare`)."""
        self.spares.append(Spare(pid, channel, tag=tag, runs_done=runs_done, stat=stat, exited=exited))

    def close(self) -> None:
        """Let every spare go (each exits when its socket closes) and wait for them, and for those let go before."""
        while self.spares:
            self._drop(self.spares[-1])
        self._reap_left(block=True)

    def _drop(self, spare: Spare) -> None:
        """Let ``spare`` go: a ready one exits when its socket closes; one still being set up (which may wait on
        luigid or the registry for long) is killed: no run was claimed in its name, and the loop must not wait. Nor
        does it wait for the exit (a spare let go on a loaded machine, or stopped, exits late): it is reaped by a
        later pass (:meth:`_look`), or by :meth:`close`."""
        self.spares.remove(spare)
        spare.channel.close()
        spare.close_handles()
        if not spare.ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spare.pid, signal.SIGKILL)  # our child, not reaped yet: its pid cannot be another's
        self._leaving.add(spare.pid)
        self._reap_left()

    def _give_back(self) -> None:
        """In a spare that has no run to begin now, its socket closed or its worker dead (``kill -9``), a stop ignored
        (:func:`~nectar.leases.ignore_stops`: it exits next): put back what was claimed in its name
        (:attr:`give_back`). Its socket closes as its worker dies, before the kernel sends its parent-death signal: so
        it asks whenever its socket closed, as it would if its worker let it go or stopped (nothing was claimed for it
        then)."""
        if self.give_back is not None:
            self.give_back(leases.process_name())

    def _reap_left(self, block: bool = False) -> None:
        """Reap the spares let go that have exited (with ``block``, wait for each)."""
        for pid in list(self._leaving):
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:  # reaped already
                done = pid
            if done:
                self._leaving.discard(pid)

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
                for other in [*(spare.channel for spare in self.spares), *self._handed()]:
                    other.close()  # or a sibling would not see its socket close with the worker's end
                os.setpgid(0, 0)  # its own group: cancelling kills the task's subprocesses too
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                leases.handle_stops()  # an attempt's lease makes SIGTERM "requeue and stop"; none, "end"
                lifeline.die_with_parent(parent)  # SIGTERM if the worker dies, even by SIGKILL
                code = self._serve(theirs, parent)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        return Spare(pid, ours)

    def _serve(self, theirs: socket.socket, worker: int) -> int:
        """In a spare of ``worker``: set up, say so, execute the run handed over; again while it may take another. Its
        exit code."""
        global _told
        runs = code = 0
        while True:
            prepared, said = self._prepare()
            why = reuse.left_open()  # what its last run left open, looked at again once it set itself up
            if why is not None:  # its worker sees it die before it is ready again, as any spare (no backoff)
                logger.info("attempt process %d exits after %d run(s): %s", os.getpid(), runs, why)
                return code
            before = reuse.before_run()  # what it holds as it waits is what it holds as its run begins: noted now
            leases.await_run(worker)  # from its word until its attempt's lease: a run claimed for it has not begun
            try:
                try:
                    theirs.sendall(said)
                    given = _read_run(theirs)
                except OSError:  # let go while it was being set up
                    given = None
                if given is None:
                    leases.ignore_stops()  # from here (raised before, it is caught below)
                else:
                    _told = theirs if given[:1] == _TELL else None  # whether it says when its first step starts
                    code, clean = self._execute(given[1:], prepared)
                    prepared = None  # the run's build let go: its cycles are garbage for put_back's collection
            except leases.WorkerGone:  # its worker died, its run (if it had one) not begun
                given = None
                leases.ignore_stops()
            if given is None:  # its worker let it go or stopped (nothing was claimed for it), or died: maybe between
                self._give_back()  # a claim in its name and the hand-over, where it alone can tell that none of it ran
                return 0
            _told = None
            runs += 1
            if not clean or runs >= self.runs_per_process:
                return code
            try:  # its slot is free now: what its run left is looked at while the worker claims the next run
                theirs.sendall(ENDED + bytes([code]))
                os.sched_yield()  # the worker, woken on this core maybe, claims before this process sets up again
            except OSError:  # the worker is gone: it no longer waits for this process
                return code
            why = reuse.left_behind(before, self.max_rss_mb) or reuse.put_back(before)
            if why is None:
                reuse.drop_exit_callbacks()  # its runs', and its worker's: none runs in this process (os._exit)
                reuse.look_for_open()  # once put back: the files of the log handlers its run added are closed
                reuse.out_of_sight()  # once in its life, what it holds with a module kept: out of its collections
            if why is not None:  # its worker sees it die before it is ready again, as any spare (no backoff)
                logger.info("attempt process %d exits after %d run(s): %s", os.getpid(), runs, why)
                return code
            leases.ran_one()


def end_group(pid: int) -> None:
    """Kill what is left of the process group of the spare ``pid``, which died before its run began: the processes
    it forked (its chain's import may fork), which would otherwise outlive it, holding its socket and what else it
    held. Its group is its own (it makes it as it starts), and is not another's: a group's id stays taken while any
    process is in it, and ``pid`` is ours until it is reaped, which its callers do only after this (a reaped pid may
    be handed out again at once, to a spare forked next, which makes a group of that id)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # no one left in it
        os.killpg(pid, signal.SIGKILL)


def freeze_held() -> None:
    """What the worker holds now (its imports, done before its first spare) leaves its collector's sight for good:
    a full collection of the worker no longer scans it, which took 20-40 ms on the claims' path (once in a few
    hundred runs) and wrote to every page its spares share with it (~4,000 copied). Collected first: what it
    freezes is never freed."""
    gc.collect()
    gc.freeze()


def hand_over(spare: Spare, given: bytes, tell: bool = True) -> socket.socket:
    """Send ``spare`` its run, its length first; OSError if it is gone. Answers its socket, on which the attempt
    says when it started (:func:`started`; only with ``tell``) and, if it stays, that it ended (:func:`heard`)."""
    try:
        spare.channel.sendall(_LENGTH.pack(len(given) + 1) + (_TELL if tell else _QUIET) + given)
    except OSError:
        spare.channel.close()
        raise
    return spare.channel


def started() -> None:
    """In an attempt forked as a spare: tell its worker, once per run, that its first step has started, once the step
    is written RUNNING (its place among nectar's START parts: :func:`nectar.task.on_start`); any other process:
    nothing."""
    global _told
    told, _told = _told, None
    if told is None:
        return
    try:
        told.send(STARTED)
    except OSError:  # the worker is gone, or stopped listening: nothing to tell
        pass


def heard(channel: socket.socket) -> tuple[bytes, int] | None:
    """What the attempt at the other end of ``channel`` said, if anything yet (None): ``(STARTED, 0)``, its first
    step started; ``(ENDED, code)``, it ended its run and stays (what it says next is a spare's: left unread);
    ``(b"", 0)``, it closed its end (it exited, or died); ``(UNREAD, 0)``, it closed its end with the run it was
    handed (:func:`hand_over`) still unread: its attempt never began."""
    try:
        said = channel.recv(1, socket.MSG_DONTWAIT)
        if said == ENDED:
            code = channel.recv(1)  # sent with it, in one write
            return (ENDED, code[0]) if code else (b"", 0)
    except BlockingIOError:
        return None
    except ConnectionResetError:  # what the kernel says of a socket whose peer closed it with bytes left unread
        return UNREAD, 0
    except OSError:
        return b"", 0
    return (STARTED, 0) if said == STARTED else (b"", 0)


def unread_by_peer(channel: socket.socket) -> bool:
    """Whether what was sent on ``channel`` is still, in part, unread at its other end: for a Unix socket, the kernel
    counts what it sent until its peer reads it (``SIOCOUTQ``). Of an attempt's socket, after its process exited:
    whether its run was left unread though its end stays open (a process it forked holds it), which neither a reset
    nor the end of the stream says (:func:`heard`)."""
    queued = array.array("i", [0])
    try:
        fcntl.ioctl(channel.fileno(), termios.TIOCOUTQ, queued, True)  # SIOCOUTQ, by its terminal alias
    except OSError:
        return False
    return queued[0] > 0


def _read_run(channel: socket.socket) -> bytes | None:
    """The run handed over (:func:`hand_over`), or None if the worker closed its end first. Waited for in a poll
    (:func:`~nectar.wakeup.readable`): in a ``recv``, the worker's read of what the spare said (that it is ready)
    woke it once more each run, for nothing, as its worker was about to claim for it."""
    wakeup.readable([channel.fileno()], None)
    head = _read_exactly(channel, _LENGTH.size)
    if head is None:
        return None
    return _read_exactly(channel, _LENGTH.unpack(head)[0])


def _read_exactly(channel: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = channel.recv(min(left, 65536))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
