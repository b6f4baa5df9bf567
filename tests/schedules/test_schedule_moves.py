"""A file schedule's state follows its definition across an edit of its task's list (``moves``, the book's sync):
its row, pause and fires move to its new ``<index>`` (in SQLite and PostgreSQL); an edit in place keeps them; the
same definition twice is matched in order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.schedules.model import moves
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.schedules.test_review23_paused_follows_index import AT_3, AT_6, CHAIN

T = "daily.c.T"


@pytest.mark.parametrize(
    ("rows", "wanted", "moved"),
    [
        ({f"{T}.0": "a"}, {f"{T}.0": "b", f"{T}.1": "a"}, {f"{T}.0": f"{T}.1"}),  # one added before
        ({f"{T}.0": "a", f"{T}.1": "b"}, {f"{T}.0": "b", f"{T}.1": "a"}, {f"{T}.0": f"{T}.1", f"{T}.1": f"{T}.0"}),
        ({f"{T}.0": "a"}, {f"{T}.0": "a2"}, {}),  # edited in place: its state stays
        ({f"{T}.0": "a", f"{T}.1": "a"}, {f"{T}.0": "x", f"{T}.1": "a", f"{T}.2": "a"}, {f"{T}.0": f"{T}.2"}),
        ({f"{T}.0": "a"}, {"daily.c.U.1": "a"}, {}),  # another task's: a new schedule
        ({f"{T}.night": "a"}, {f"{T}.0": "a"}, {}),  # a named one keeps its name
        ({"f1": "a", f"{T}.0": "b"}, {"f1": "a", f"{T}.1": "b"}, {f"{T}.0": f"{T}.1"}),  # an id of no dot: no place
    ],
)
def test_moves(rows: dict[str, str], wanted: dict[str, str], moved: dict[str, str]) -> None:
    assert moves(rows, wanted) == moved


def test_the_sync_moves_a_schedules_row_with_its_pause_and_fires(
    registry: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_3))
    nectar = closed_at_end(Nectar(registry))
    book = nectar.schedules
    first = "daily.sales_chain.DailyTask.0"
    book.change(first, {"paused": True})
    nectar.runs.hold(first, 1, [3.0 * 3600], "b1")
    write_chain("daily/sales_chain", CHAIN.format(schedules=f"{AT_6}, {AT_3}"))
    book.sync()
    rows = {row.id: (row.spec.definition()["cron"], row.paused) for row in nectar.runs.schedules()}
    assert rows == {first: ("0 6 * * *", False), "daily.sales_chain.DailyTask.1": ("0 3 * * *", True)}, rows
    assert [f.fire_time for f in nectar.runs.fires("daily.sales_chain.DailyTask.1")] == [3.0 * 3600]
    assert nectar.runs.fires(first) == []
