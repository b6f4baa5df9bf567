"""A relay's thread (:mod:`nectar.relay`): beats for each turn that takes it over, holding none it has left."""

from __future__ import annotations

import gc
import threading
import time
import weakref

from nectar.relay import Relay, Turn
from tests.conftest import wait_until


class _Owner:
    """A turn's owner, as an attempt's lease is: what its turn holds, weakly referable."""

    def __init__(self, name: str) -> None:
        self.name = name


def served(relay: Relay[_Owner], beaten: list[str]) -> tuple[Turn[_Owner], threading.Thread]:
    """A thread serving ``relay`` from a turn "first", once it beat for it; each beat noted in ``beaten``, the next
    due only when the thread is woken."""

    def beat(owner: _Owner) -> float:
        beaten.append(owner.name)
        return time.monotonic() + 3600

    first = Turn(_Owner("first"), due=0.0)
    thread = threading.Thread(target=relay.serve, args=(first, beat), daemon=True)
    thread.start()
    wait_until(lambda: beaten == ["first"])
    return first, thread


def test_a_relays_thread_holds_no_turn_before_the_one_it_beats_for() -> None:
    """An attempt process's heartbeat thread beats for attempt after attempt: it held the first turn it served, and
    through each ended turn the one that took it over, so every lease of the process (its run, its steps' recorder)
    stayed alive while the thread lived, up to ``NECTAR_RUNS_PER_PROCESS`` runs, in sight of each run's collection."""
    relay: Relay[_Owner] = Relay()
    beaten: list[str] = []
    first, thread = served(relay, beaten)
    relay.end(first)
    second_owner = _Owner("second")
    second = Turn(second_owner, due=0.0)  # sooner than the first's next beat: its thread is woken for it
    assert relay.take_over(second) is first
    wait_until(lambda: beaten == ["first", "second"])
    relay.end(second)
    third = Turn(_Owner("third"), due=0.0)
    assert relay.take_over(third) is second
    wait_until(lambda: beaten == ["first", "second", "third"])
    gone = weakref.ref(second_owner)
    del second, second_owner
    gc.collect()
    assert gone() is None  # the thread beats for the third; the first (its serve's argument) no longer leads to it
    relay.end(third)
    third.wake.set()
    thread.join(60)
    assert not thread.is_alive()


def test_a_relays_thread_not_woken_between_turns_holds_none_but_the_last_that_took_it_over() -> None:
    """Attempt after attempt took over a heartbeat thread that slept till its next beat (each turn's due later than
    the one before: the thread is not woken): the turn the thread held led to each ended one through the one that
    took it over, so every lease of the last ``interval`` (its run, its steps' recorder) stayed alive until the
    thread's next beat, ~60 runs' at 30 runs/s a process, in sight of each run's collection."""
    relay: Relay[_Owner] = Relay()
    beaten: list[str] = []
    first, thread = served(relay, beaten)
    ended = first
    gone = []
    for n in range(3):
        relay.end(ended)
        owner = _Owner(f"later {n}")
        later = Turn(owner, due=time.monotonic() + 7200)  # after the thread's next beat: it is not woken for it
        assert relay.take_over(later) is ended
        gone.append(weakref.ref(owner))
        ended = later
    del later, owner
    gc.collect()
    assert [ref() is None for ref in gone] == [True, True, False]  # the last one alone, which the thread beats for
    assert beaten == ["first"]
    ended.wake.set()  # its beat now: the thread moves on to it, past none of the others
    wait_until(lambda: beaten == ["first", "later 2"])
    relay.end(ended)
    ended.wake.set()
    thread.join(60)
    assert not thread.is_alive()
