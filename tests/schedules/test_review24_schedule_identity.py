"""review24 (round 70), a guard that passes on main, for the mend of review23's finding (a paused file schedule's
pause passing to one added before it in its list): whatever a file schedule's identity becomes, an edit of the one
schedule an operator paused (its time moved from 03:00 to 03:30 by a developer, as the upstream it waits for moved)
keeps it paused. Under main's identity (its place in the list) it does; an identity made of the schedule's contents
(its cron, its parameters) would make the edited schedule a new one, active, firing against the upstream the
operator paused it for, its old row's pause kept on a schedule no file declares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.schedules.test_review23_paused_follows_index import CHAIN

AT_3 = 'Schedule("0 3 * * *", fire_time_param="date")'
AT_3_30 = 'Schedule("30 3 * * *", fire_time_param="date")'


def test_a_paused_file_schedule_stays_paused_when_its_time_is_edited(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_3))
    book = closed_at_end(Nectar(settings)).schedules
    [only] = book.views()
    book.change(only.id, {"paused": True})
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_3_30))
    paused = {view.to_dict()["cron"]: view.paused for view in book.views()}
    assert paused == {"30 3 * * *": True}, paused
