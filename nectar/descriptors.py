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
        :attr:`fd` was; None if it is closed, before the sleep or during it (the close ends the sleep at once).

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
            closed = self._closed
            self._users += 1
        try:
            woken = wakeup.readable([*also, self.fd] if closed is None else [*also, self.fd, closed], timeout)
            if self.fd in woken:
                wakeup.drain(self.fd)
            shut = self._closing if closed is None else closed in woken
        finally:
            self.give_back()
        return True if self.fd in woken else None if shut else False

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


#: the process that logged it could not make a close's ``eventfd`` (a fork logs its own)
_said_no_eventfd: list[int] = []


def _no_eventfd(exc: OSError) -> None:
    if _said_no_eventfd != [os.getpid()]:
        _said_no_eventfd[:] = [os.getpid()]
        logger.warning("no eventfd to wake pollers at a close (%s): a close during a poll is seen at its end", exc)
