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


def test_a_relays_thread_holds_no_turn_before_the_one_it_beats_for() -> None:
    """An attempt process's heartbeat thread beats for attempt after attempt: it held the first turn it served, and
    through each ended turn the one that took it over, so every lease of the process (its run, its steps' recorder)
    stayed alive while the thread lived, up to ``NECTAR_RUNS_PER_PROCESS`` runs, in sight of each run's collection."""
    relay: Relay[_Owner] = Relay()
    beaten: list[str] = []

    def beat(owner: _Owner) -> float:
        beaten.append(owner.name)
        return time.monotonic() + 3600  # the next beat only when woken

    first = Turn(_Owner("first"), due=0.0)
    thread = threading.Thread(target=relay.serve, args=(first, beat), daemon=True)
    thread.start()
    wait_until(lambda: beaten == ["first"])
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
