"""review23: a file schedule whose chain file no longer executes (a syntax error pushed at night) keeps its row in the
registry, its pause and its cursor (``ScheduleBook.sync``: "the rows of a chain file that does not import are kept ...
but not fired"), and fires again, catching up, once the file is fixed. Meanwhile an operator cannot see it or hold it:
``GET /api/schedules`` lists nothing of it, and ``PATCH /api/schedules/<id> {"paused": true}`` (README: "a file's
schedule is paused over HTTP") answers ``404 no schedule <id>``, so the fire missed overnight is made the moment the
fix lands, whatever the operator meant to hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.helpers.registries import closed_at_end
from tests.schedules.test_review23_paused_follows_index import AT_3, CHAIN

SCHEDULE = "daily.sales_chain.DailyTask.0"


def test_a_file_schedule_whose_chain_does_not_import_is_listed_and_paused_over_http(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_3))
    nectar = closed_at_end(Nectar(settings))
    nectar.schedules.sync()  # its row, as a clock's pass makes it
    write_chain("daily/sales_chain", CHAIN.format(schedules=AT_3) + "\nclass Half(luigi.Task:\n")
    nectar.schedules.sync()
    assert nectar.runs.schedule(SCHEDULE) is not None  # kept, with its pause and cursor
    client = build_app(settings).test_client()
    listed = client.get("/api/schedules").get_json()
    paused = client.patch(f"/api/schedules/{SCHEDULE}", json={"paused": True})
    assert (paused.status_code, SCHEDULE in str(listed)) == (200, True), (paused.get_json(), listed)
    row = nectar.runs.schedule(SCHEDULE)
    assert row is not None and row.paused
