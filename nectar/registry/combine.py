"""Writes that a process's threads ask for at once, made together in one transaction by the first to get the turn.

A write's turn and transaction cost more than its rows: each commit of a new run alone writes ~8 pages to the WAL
(8.25 frames a run, round 58: the row, the five indexes a PENDING run is in, the counts' row, a b-tree's split now
and then), six of them, for runs of one task, the pages the run before it wrote (the newest leaves; the active key's
leaf is its own), and the turn is handed over through a lock between threads and the kernel's between processes
(futex waits, context switches). Here a thread that asks while another holds or awaits the turn
waits; the one that next takes the turn writes what every thread asked until then, in one transaction, and wakes each
with its own answer. Under 16 clients of two API workers ~40 % of new runs were written in a turn with others (2 to 8
runs); the API's CPU per new run fell by 4-8 %. Each write is committed before its thread is answered, as before; one
alone is written as it was.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


class _Asked(Generic[T, R]):
    """One thread's write, and once written its answer (or the error that refused it)."""

    __slots__ = ("item", "answer", "error", "shared", "done", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.answer: R | None = None
        self.error: BaseException | None = None
        self.shared = False  # its error ended the whole turn: every thread of the turn was given it
        self.done = False
        self.wake = threading.Lock()  # held until this write is done, or its thread is to take the next turn
        self.wake.acquire()

    def result(self) -> R:
        if self.error is not None:
            if self.shared:  # one exception raised in several threads would gather all their tracebacks
                mine = _copy_of(self.error)
                if mine is not None:
                    raise mine from self.error
            raise self.error
        return cast(R, self.answer)  # no error: write_all gave this write its answer (an R, None if R admits it)


def _copy_of(error: BaseException) -> BaseException | None:
    """A copy of ``error`` (its type, arguments and attributes) for one thread to raise, or None if it cannot be
    made again from them."""
    try:
        return copy.copy(error)
    except Exception:
        return None


#: each write's outcome, in the order asked: its answer, or the error that refused it alone
Outcome = tuple[R | None, Exception | None]


class Combiner(Generic[T, R]):
    """Writes of one process's threads, made in turns: each turn writes all those asked since the last began.

    ``turn`` is the writer's turn (taken before the writes are gathered, so that those asked while it was awaited
    are in); ``write_all`` writes items in one transaction, and gives each its outcome. An error that ends the
    transaction (none of its items written), or the turn, is raised in the thread of each write it ended.
    """

    def __init__(
        self,
        turn: Callable[[], AbstractContextManager[object]],
        write_all: Callable[[Sequence[T]], list[Outcome[R]]],
    ) -> None:
        self._turn = turn
        self._write_all = write_all
        self._lock = threading.Lock()
        self._asked: list[_Asked[T, R]] = []
        self._leading = False  # a thread has the next turn, or is in it

    @property
    def waiting(self) -> int:
        """How many writes are asked and not yet taken into a turn."""
        return len(self._asked)

    def __call__(self, item: T) -> R:
        """``item`` written (in a turn of this thread's or another's), and its answer."""
        asked: _Asked[T, R] = _Asked(item)
        with self._lock:
            self._asked.append(asked)
            follow, self._leading = self._leading, True
        if follow:
            asked.wake.acquire()  # its write is done, or this thread takes the next turn
            if asked.done:
                return asked.result()
        self._lead()
        return asked.result()

    def _take(self) -> list[_Asked[T, R]]:
        with self._lock:
            batch, self._asked = self._asked, []
        return batch

    def _lead(self) -> None:
        """Take the turn, write every write asked until then (this thread's among them), answer each, and hand the
        next turn to the first asked since."""
        batch: list[_Asked[T, R]] = []
        try:
            with self._turn():
                batch = self._take()
                outcomes = self._write_all([asked.item for asked in batch])
            for asked, (answer, error) in zip(batch, outcomes, strict=True):
                asked.answer, asked.error = answer, error
        except BaseException as exc:  # noqa: B036 -- handed to each thread whose write it ended, re-raised there
            batch = batch or self._take()  # the turn itself failed: so it does for every write that awaited it
            for asked in batch:
                asked.error, asked.shared = exc, len(batch) > 1
        finally:
            with self._lock:
                following = self._asked[0] if self._asked else None
                self._leading = following is not None
            for asked in batch:  # each held its lock since it asked (this thread's too): released, its thread goes on
                asked.done = True
                asked.wake.release()
            if following is not None:
                following.wake.release()  # not done: its thread takes the next turn
