"""review23: a ``nectar clock`` whose machine's clock is ahead of the registry's (an NTP step gone wrong, a VM resumed
with a bad clock) makes the fires of a time still to come: a day ahead, an hourly schedule's catch-up makes the fire of
this hour tomorrow now (its run given tomorrow's fire time), and when that time comes every clock finds it made. A
worker compares its clock with PostgreSQL's as it starts and warns (``leases.check_clock``); a clock alone compares
nothing and fires by its own (``ScheduleLoop.clock`` is ``time.time``), though README's *Clocks* sends clocks to
"as many machines as you like".

The machine's clock is moved for the clock's process alone (``time.time`` shifted before ``nectar.cli`` is imported):
a mock, for a fault not caused for real here (setting the host's clock needs CAP_SYS_TIME and moves every process)."""

from __future__ import annotations

import sys
import time

import pytest

from tests.schedules.firing import Firing, iso

#: how far ahead the clock's machine is: a day
AHEAD = 86400.0
#: ``nectar clock`` with its process's clock ``AHEAD`` seconds ahead of the machine's
CLOCK_AHEAD = [
    sys.executable,
    "-c",
    "import runpy, sys, time\n"
    "_real = time.time\n"
    f"time.time = lambda: _real() + {AHEAD!r}\n"
    "sys.argv = ['nectar', 'clock']\n"
    "runpy.run_module('nectar.cli', run_name='__main__', alter_sys=True)\n",
]


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_a_clock_ahead_of_the_registry_makes_no_fire_of_a_time_still_to_come(firing: Firing) -> None:
    """An hourly schedule begun two hours ago (so a clock in time makes this hour's fire, its catch-up's latest), and
    one ``nectar clock`` a day ahead: once a fire is queued, none is of a time later than now."""
    sid = firing.create(interval_s=3600, start=iso(time.time() - 7200))
    clock = firing.processes.start("clock", CLOCK_AHEAD, firing.env)
    log = firing.processes.log_of[clock.pid]

    def queued_or_warned() -> bool:  # the catch-up's latest queued (the fires it skips may be recorded before it), or
        # the clock's word that its clock is off the registry's (a clock that then fires nothing makes no fire ahead)
        warned = any("WARNING" in line and "registry" in line for line in log.read_text(errors="replace").splitlines())
        return warned or any(fire.state == "queued" for fire in firing.fires(sid))

    firing.wait(queued_or_warned, "the clock to queue a fire or to warn of its clock")
    now = time.time()
    ahead = [(iso(fire.fire_time), fire.state) for fire in firing.fires(sid) if fire.fire_time > now]
    assert ahead == [], f"fires of a time still to come, made at {iso(now)}: {ahead}"
