"""A descriptor that a process's threads use while another may close it, closed once none of them uses it."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence

from nectar import wakeup

logger = logging.getLogger(__name__)


class SharedDescriptor:
    """A descriptor (``fd``) that threads write to or poll (:meth:`take` ... :meth:`give_back`) while another may
    :meth:`close` it: the number is closed once the close was asked and no thread uses it any longer, so no thread
    writes to or polls a number after its close (the process may have given it to another file since). Closed too
    once ``owner`` is freed (if it was not before), and only in the process that opened it: a fork's copy is the
    parent's (its child closes its own copies as it exits). A close wakes every thread polling it (:meth:`poll`) at
    once: each polls an ``eventfd`` beside it that the close makes readable, closed with it by the last to give it
    back."""

    def __init__(self, fd: int, owner: object) -> None:
        self.fd = fd
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        #: the ``eventfd`` a close writes to, made by the first :meth:`poll` (a descriptor only written needs none)
        self._closed: int | None = None
        #: how many times a poller found :attr:`fd` readable and drained it, for all the others (:meth:`poll`)
        self._wakes = 0
        #: by thread: the wakes it has seen (at its last poll's end), and its ``eventfd`` that a poller that drained
        #: :attr:`fd` writes to while it sleeps (closed as the thread ends, or this is freed)
        self._threads = threading.local()
        #: the ``eventfd`` of each thread sleeping in :meth:`poll` that has one; those written since their last drain
        self._sleeping: set[int] = set()
        self._echoed: set[int] = set()
        self._freed = weakref.finalize(owner, self.close)

    def take(self) -> bool:
        """Whether the caller may use :attr:`fd` (then it gives it back after, :meth:`give_back`): not once closed."""
        with self._lock:
            if self._closing:
                return False
            self._users += 1
            return True

    def poll(self, also: Sequence[int], timeout: float) -> bool | None:
        """Sleep up to ``timeout`` seconds, until :attr:`fd` (then drained) or one of ``also`` is readable: whether
        :attr:`fd` was since the calling thread's last poll ended, here or drained by another thread; None if it is
        closed, before the sleep or during it (the close ends the sleep at once).

        Threads poll it at once: the one that drains it wakes the others that sleep (each thread's ``eventfd``) and
        counts the wake, which a thread that was not sleeping then sees at its next poll (returned at once, as the
        word kept in :attr:`fd` would have been with one thread). One thread drained the others' wake: a thread
        between two polls meanwhile, or one not yet back in its sleep, slept out its timeout.

        Without a descriptor to spare for the close's ``eventfd`` (the process at its limit, ``EMFILE``), it sleeps
        all the same, on :attr:`fd` and ``also``, and a close during the sleep is seen at its end (None then): a
        waiter for work goes on waiting for it, its sleep no longer cut short by a close (logged once a process, at
        WARNING); the next poll tries again to make the ``eventfd``. The error escaped from a wait for work before."""
        with self._lock:
            if self._closing:
                return None
            if self._closed is None:
                try:
                    self._closed = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                except OSError as exc:
                    _no_eventfd(exc)
            closed, echo, seen = self._closed, self._echo(), getattr(self._threads, "seen", self._wakes)
            if seen != self._wakes:  # drained by another since this thread's last poll
                self._threads.seen = self._wakes
                return True
            self._users += 1
            if echo is not None:
                self._sleeping.add(echo)
        try:
            woken = wakeup.readable([fd for fd in (*also, self.fd, closed, echo) if fd is not None], timeout)
            with self._lock:
                self._sleeping.discard(echo)
                if self.fd in woken and wakeup.drain(self.fd):  # not by another that woke with it
                    self._wakes += 1
                    for other in self._sleeping - self._echoed:
                        os.eventfd_write(other, 1)
                    self._echoed |= self._sleeping
                if echo is not None and echo in self._echoed:  # written, read or not by this poll: it sleeps again
                    self._echoed.discard(echo)
                    wakeup.drain(echo)
                woke, self._threads.seen = self._wakes != seen, self._wakes
            shut = self._closing if closed is None else closed in woken
        finally:
            self.give_back()
        return True if woke else None if shut else False

    def _echo(self) -> int | None:
        """The calling thread's ``eventfd`` that another poller writes to once it drained :attr:`fd` (the caller
        holds the lock), made at its first poll; None without a descriptor to spare (it sleeps out its timeout)."""
        echo: _Echo | None = getattr(self._threads, "echo", None)
        if echo is None:
            try:
                echo = self._threads.echo = _Echo(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
            except OSError as exc:
                _no_eventfd(exc)
                return None
            self._echoed.discard(echo.fd)  # a thread's that ended, written before, had the number
        return echo.fd

    def give_back(self) -> None:
        """The caller's use that :meth:`take` allowed is over: the number closed if it was the last, after a close."""
        with self._lock:
            self._users -= 1
            last = self._closing and self._users == 0
        if last:
            self._shut()

    def close(self) -> None:
        """Closed now if no thread uses it, else by the last to give it back; later :meth:`take` are refused. A
        fork's copy is left alone (its lock may have been copied held)."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._closed is not None:  # open until the last user gives it back, which is after this
                os.eventfd_write(self._closed, 1)
            last = self._users == 0
        if last:
            self._shut()

    def _shut(self) -> None:
        self._freed.detach()
        os.close(self.fd)
        if self._closed is not None:
            os.close(self._closed)


class _Echo:
    """A thread's ``eventfd``, closed as it is freed (its thread ended, or the descriptor it was made for freed)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, _close_in, os.getpid(), fd)


def _close_in(made_in: int, fd: int) -> None:
    """Close ``fd`` in the process that made it: a fork's copy is left for its exit (its number may be another's)."""
    if os.getpid() == made_in:
        os.close(fd)


#: the process that logged it could not make a close's ``eventfd`` (a fork logs its own)
_said_no_eventfd: list[int] = []


def _no_eventfd(exc: OSError) -> None:
    if _said_no_eventfd != [os.getpid()]:
        _said_no_eventfd[:] = [os.getpid()]
        logger.warning("no eventfd to wake pollers at a close (%s): a close during a poll is seen at its end", exc)
