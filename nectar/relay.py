"""A loop on a standby thread (:mod:`nectar.standby`) that the process's next loop of its kind takes over, unwoken.

An attempt's heartbeat waits on an event between two beats. Woken as its attempt ended to end, then handed the next
attempt's heartbeat, its thread got a core and the GIL twice a run, on the attempt's way (its end, its start) on 2
loaded cores. Relayed, an ended loop is not woken: its thread ends when its next beat is
due, unless the process's next loop of the same kind has taken it over by then (:meth:`Relay.take_over`): the thread,
waiting on the same event, then waits for that loop's own first beat, or is woken at once if that beat comes sooner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from nectar import forks
from nectar.stdlib_internals import new_event

Owner = TypeVar("Owner")


class Turn(Generic[Owner]):
    """One loop's part in a relay: its owner, the event its thread waits on, when its next beat is due (monotonic),
    whether it ended, the turn that took its thread over, whether that thread no longer beats for it, and, for a turn
    that took over a thread not yet moved on to it, the turn that thread holds (its loop's)."""

    def __init__(self, owner: Owner, due: float) -> None:
        self.owner = owner
        self.wake = new_event()  # threading's, made without its Condition's caught errors
        self.due = due
        self.ended = False
        self.next: Turn[Owner] | None = None
        self.gone = False
        #: the ended turn the thread's loop holds, which leads to this one (:meth:`Relay.take_over`); None once the
        #: thread holds this one (or before any thread does)
        self.held: Turn[Owner] | None = None


class Relay(Generic[Owner]):
    """The ended turn of this process whose thread still waits out its beat, for the next turn to take over."""

    def __init__(self) -> None:
        #: the ended turn and the process it ended in: a forked child's take-over finds its parent's, and takes none
        self._waiting: tuple[int, Turn[Owner]] | None = None
        #: made anew in a forked child (a parent's thread may hold it at the fork), as a module's own lock is
        self._lock = forks.lock_made_anew_in_children(vars(self), "_lock")

    def take_over(self, turn: Turn[Owner]) -> Turn[Owner] | None:
        """The last ended turn of this process whose thread, still waiting, now beats for ``turn`` (which waits on its
        event from now on), woken if ``turn``'s beat comes before the one it waits for; None if there is none.

        The turn the thread holds leads straight to ``turn``, past the ended ones that took it over before without
        the thread moving on to them (it is woken only for a beat due sooner: a heartbeat's, every ``interval``):
        linked one to the next, each of them stayed alive with its owner (an attempt's lease, its run, its steps'
        recorder: ~34 objects) until the thread's next beat, in sight of each run's collection
        (:func:`nectar.reuse.put_back`): every run of the last 2 s, ~60 at 30 runs/s a process."""
        with self._lock:
            waiting, self._waiting = self._waiting, None
            if waiting is None or waiting[0] != forks.pid() or waiting[1].gone:
                return None
            previous = waiting[1]
            held = previous.held or previous
            if previous is not held:
                previous.next = previous.held = None  # left out of the thread's way: it never moves on to it
            held.next, turn.held, turn.wake = turn, held, previous.wake
        if turn.due < previous.due:
            turn.wake.set()
        return previous

    def end(self, turn: Turn[Owner]) -> None:
        """``turn`` ended: its thread, not woken, ends at its next beat unless the next turn takes it over first."""
        with self._lock:
            turn.ended = True
            if not turn.gone:
                self._waiting = (forks.pid(), turn)

    def give_up(self, turn: Turn[Owner]) -> bool:
        """``turn``'s thread beats for no later turn (it ends now); False, and it goes on, when a later turn has
        already taken it over (``turn`` ended as its beat was under way: that beat's failure is not the later one's)."""
        with self._lock:
            if turn.next is not None:
                return False
            turn.gone = True
            return True

    def _current(self, turn: Turn[Owner]) -> Turn[Owner] | None:
        """The turn the thread of ``turn`` beats for now: ``turn``, or, once it ended, the one that took its thread
        over (and so on); None once the last one ended with none to take it over (the thread is done).

        An ended turn the thread leaves no longer leads to the next: the thread's first turn stays referenced while
        it runs (its loop's caller holds it), and through the chain of ``next`` every later one did, with its owner
        (an attempt's lease, its run, its steps' recorder): ~27 objects a run kept, up to the process's last run, and
        scanned by each run's collection (:func:`nectar.reuse.put_back`)."""
        with self._lock:
            while turn.ended:
                following = turn.next
                if following is None:
                    turn.gone = True
                    if self._waiting is not None and self._waiting[1] is turn:
                        self._waiting = None
                    return None
                turn.next, turn = None, following
            turn.held = None  # the thread holds it now
        return turn

    def serve(self, turn: Turn[Owner], beat: Callable[[Owner], float | None]) -> Owner | None:
        """The loop: ``beat(owner)`` when a turn's beat is due, or at once when woken, for ``turn`` and the turns that
        take its thread over; ``beat`` answers when the next is due (monotonic), None to end the loop. Answers the
        owner of the last turn once it ended with none to take over (None: ``beat`` ended the loop)."""
        while True:
            woken = turn.wake.wait(max(0.0, turn.due - time.monotonic()))
            turn.wake.clear()
            now_for = self._current(turn)
            if now_for is None:
                return turn.owner
            if now_for is not turn and not woken:  # its turn ended, another took over: that one's beat is later
                turn = now_for
                continue
            turn = now_for
            due = beat(turn.owner)
            if due is None:
                return None
            turn.due = due
