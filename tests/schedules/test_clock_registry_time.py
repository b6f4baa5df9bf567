"""A ``nectar clock`` fires by its registry's time (``leases.RegistryClock``), not its machine's: a day ahead, it makes
this hour's fire (its catch-up's latest), not tomorrow's, and says at WARNING how far off the registry's it is.

Its process's clock is moved (``time.time`` shifted before ``nectar.cli`` is imported): a mock, for a fault not
caused for real here (setting the host's clock needs CAP_SYS_TIME and moves every process)."""

from __future__ import annotations

import time

import pytest

from tests.schedules.firing import Firing, iso
from tests.schedules.test_review23_clock_ahead import CLOCK_AHEAD


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_a_clock_a_day_ahead_fires_this_hour_by_the_registrys_time(firing: Firing) -> None:
    hour = 3600
    sid = firing.create(interval_s=hour, start=iso(time.time() - 2 * hour))
    before = time.time()  # the registry's time is the machine's here: the clock's latest due fire is this hour's
    clock = firing.processes.start("clock", CLOCK_AHEAD, firing.env)
    firing.wait(lambda: any(fire.state == "queued" for fire in firing.fires(sid)), "the clock to queue a fire")
    after = time.time()
    queued = [fire.fire_time for fire in firing.fires(sid) if fire.state == "queued"]
    this_hour = before // hour * hour  # its fires are the hour's multiples: the catch-up's latest as the clock started
    assert len(queued) == 1 and this_hour <= queued[0] <= after, ([iso(t) for t in queued], iso(this_hour), iso(after))
    log = firing.processes.log_of[clock.pid].read_text(errors="replace")
    assert "ahead of the registry's" in log, log[-2000:]
