"""Each fire time made once across real ``nectar clock`` processes on SQLite and PostgreSQL when a clock ends
mid-catch-up: killed mid-fire and restarted, stopped by SIGTERM (clocks racing: ``test_clock_races.py``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.schedules.times import Timing
from tests.schedules.firing import Firing, Gate, assert_once, iso, past_window


def test_a_clock_killed_mid_fire_three_times_and_restarted_loses_and_doubles_nothing(
    firing: Firing, write_chain: Callable[[str, str], Path]
) -> None:
    """One clock catching up 600 missed fire times, SIGKILLed three times while it makes them: the clock
    started after it makes the rest, every fire time once. Each clock is killed after it made 10 fires, wherever it
    is then, and before the catch-up ends: a gate holds it 150 fire times further (a free clock made ~200 fires in
    the 0.1 s a test waits between two counts, and a third kill once came after the catch-up: CI, 612 fires)."""
    gate = Gate(firing, write_chain)
    start = float(int(time.time()) - 610)
    window = past_window(Timing.parse(None, 1, "UTC"), start, 600)
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    killed_at = []
    for n in range(3):
        gate.hold(window[150 * (n + 1)])
        before = len(firing.fires(sid))
        clock = firing.clock()
        made = firing.wait_count(sid, before + 10, "the restarted clock to make 10 fires", interval=0.01)
        firing.kill(clock)
        killed_at.append(made)
    gate.hold(None)
    firing.clock()
    firing.wait_fired(sid, window, "the 600 fire times to be made after the third restart")

    assert killed_at == sorted(killed_at) and killed_at[-1] < 600, f"killed after the catch-up: {killed_at}"
    assert_once(firing, sid, window)


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
def test_a_clock_stopped_by_sigterm_mid_catch_up_exits_after_the_fire_it_makes(
    firing: Firing, write_chain: Callable[[str, str], Path]
) -> None:
    """SIGTERM while a clock catches up 900 missed fire times: it exits at once, not after the whole pass (which
    nectar serve, waiting for its parts, would end with SIGKILL); the next clock makes the rest, once each. The
    clock is held 300 fire times in, then let make one more fire at a time until it exits: it cannot end the pass
    before the signal is handled, however slowly (free, it made the 870 fires left in ~0.4 s)."""
    gate = Gate(firing, write_chain)
    start = float(int(time.time()) - 910)
    window = past_window(Timing.parse(None, 1, "UTC"), start, 900)
    held = 300
    gate.hold(window[held])
    sid = firing.create(interval_s=1, catchup="all", start=iso(start))
    clock = firing.clock()
    firing.wait_count(sid, 30, "the clock to make 30 fires")

    clock.send_signal(signal.SIGTERM)

    def exited_letting_one_fire_go_at_a_time() -> bool:
        nonlocal held
        if clock.poll() is not None:
            return True
        if held < len(window) and len(firing.fires(sid)) >= held:  # it made every fire before the held one
            held += 1
            gate.hold(window[held] if held < len(window) else None)
        return False

    firing.wait(exited_letting_one_fire_go_at_a_time, "the clock to exit")
    assert clock.returncode == 0
    stopped_at = len(firing.fires(sid))
    assert stopped_at < 900, f"the clock ended its pass ({stopped_at} fires) before it stopped"
    gate.hold(None)
    firing.clock()
    firing.wait_fired(sid, window, "the next clock to make the rest")
    assert_once(firing, sid, window)
