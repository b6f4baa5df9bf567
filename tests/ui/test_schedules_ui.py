"""The schedules page: every schedule (file and API) with its next and last fires, pause and resume, a backfill and
its fires, errors naming their field; runs made by a schedule say so. Through the test client, then in Chromium
against a real Datanectar (gunicorn and a worker)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from nectar.auth import digest
from nectar.config import Settings
from nectar.registry.model import iso_utc
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.helpers.browser import expect
from tests.helpers.registries import closed_at_end
from tests.schedules.conftest import DAILY_CHAIN
from tests.ui.conftest import Site
from tests.ui.test_pages import Elements, html

FILE_ID = "daily.sales_chain.DailyTask.0"
SLOT = "daily/sales_chain/SlotTask"
#: 3 fire times of the daily 03:00 (Paris) schedule
MARCH = {"start": "2026-03-01", "end": "2026-03-03T12:00"}
#: how long the worker may take to run the backfilled fires
RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def daily(write_chain: Callable[[str, str], Path]) -> Path:
    return write_chain("daily/sales_chain", DAILY_CHAIN)


@pytest.fixture
def book(app: Flask, daily: Path) -> Any:
    return app.extensions["nectar"].schedules


def card_of(page: str, schedule_id: str) -> str:
    """The markup of one schedule's card."""
    found = re.search(
        rf'<section class="card schedule" data-schedule-id="{re.escape(schedule_id)}".*?</section>', page, re.S
    )
    assert found, f"no card of {schedule_id} in the page"
    return found.group(0)


def post(client: FlaskClient, url: str, body: Any, code: int, **headers: str) -> dict[str, Any]:
    answer = client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)
    assert answer.status_code == code, answer.get_data(as_text=True)
    return answer.get_json()


def test_the_page_lists_file_and_api_schedules_with_next_and_last_fires(client: FlaskClient, book: Any) -> None:
    made = book.create({"task": SLOT, "interval_s": 900, "params": {"label": "<b>x</b>"}, "fire_time_param": "when"})

    page = html(client, "/ui/schedules")

    assert 'href="/ui/schedules"' in page  # in the navigation
    daily = card_of(page, FILE_ID)
    assert ">file</span>" in daily and "daily/sales_chain/DailyTask" in daily
    assert "0 3 * * * (Europe/Paris)" in daily and "date = the fire time, moved -P1D" in daily
    assert len(re.findall(r"<div>\d{4}-\d\d-\d\dT03:00:00\+0[12]:00</div>", daily)) == 5  # next 5, local ISO
    assert "never fired" in daily and 'data-state="ACTIVE"' in daily
    assert 'href="/ui/daily/sales_chain/DailyTask"' in daily and "sales_chain.py" in daily
    api = card_of(page, made.id)
    assert ">api</span>" in api and "every 900 s (UTC)" in api
    assert "label = &lt;b&gt;x&lt;/b&gt;" in api and "<b>x</b>" not in api
    assert f'data-url="/ui/schedules/{made.id}/backfill"' in api


def test_a_schedule_declared_wrong_is_listed_with_its_chain(
    client: FlaskClient, book: Any, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("daily/bad_chain", DAILY_CHAIN.replace('Schedule("0 3 * * *"', 'Schedule("<b>nope</b>"'))
    page = html(client, "/ui/schedules")
    errors = re.search(r'<div class="alert alert-error" id="schedule-errors".*?</div>', page, re.S)
    assert errors and '<span class="mono">daily/bad_chain</span>' in errors.group(0), page
    assert "DailyTask" in errors.group(0) and "cron" in errors.group(0) and "<b>nope" not in page
    assert FILE_ID in page  # the other chain's schedule is listed still


def test_pause_and_resume_a_file_schedule(client: FlaskClient, book: Any) -> None:
    url = f"/ui/schedules/{FILE_ID}/paused"
    assert post(client, url, {"paused": True}, 200)["data"]["paused"] is True
    assert book.view(FILE_ID).paused
    paused = card_of(html(client, "/ui/schedules"), FILE_ID)
    assert 'data-state="PAUSED"' in paused and "none while paused" in paused and ">Resume</button>" in paused

    assert post(client, url, {"paused": False}, 200)["data"]["paused"] is False
    assert not book.view(FILE_ID).paused
    assert ">Pause</button>" in card_of(html(client, "/ui/schedules"), FILE_ID)


def test_a_backfill_answers_what_it_queued_and_its_fires_are_listed_with_their_runs(
    client: FlaskClient, book: Any
) -> None:
    data = post(client, f"/ui/schedules/{FILE_ID}/backfill", MARCH, 201)["data"]

    assert data["fire_times"] == 3 and data["existing"] == 0
    assert [fire["fire_time"] for fire in data["fires"]] == [
        "2026-03-01T03:00:00+01:00",
        "2026-03-02T03:00:00+01:00",
        "2026-03-03T03:00:00+01:00",
    ]
    assert {(fire["state"], fire["job_status"]) for fire in data["fires"]} == {("queued", "PENDING")}
    assert data["progress_url"] == f"/ui/schedules/{FILE_ID}?backfill={data['id']}"

    progress = html(client, data["progress_url"])
    assert f'Fires of backfill <span class="mono">{data["id"]}</span>' in progress
    rows = re.findall(r'<tr data-fire-time="([^"]+)">.*?href="/ui/runs/([0-9a-f]{32})"', progress, re.S)
    assert sorted(time for time, _ in rows) == [fire["fire_time"] for fire in data["fires"]]
    # the run says which schedule made it, for which fire time, on its page and in the runs list
    run_id = rows[0][1]
    run_page = html(client, f"/ui/runs/{run_id}")
    assert "run-schedule" in Elements(run_page).by_id
    fire_time = iso_utc(book.runs.get(run_id).fire_time)
    assert fire_time is not None
    assert f'made by schedule <a href="/ui/schedules/{FILE_ID}" class="mono">{FILE_ID}</a>' in run_page
    assert f'for <time class="mono">{fire_time}</time>' in run_page and fire_time.endswith("T02:00:00+00:00")
    assert html(client, "/ui/runs").count(f'made by schedule <a href="/ui/schedules/{FILE_ID}"') == 3
    # the last fire on the list page links its run
    last = card_of(html(client, "/ui/schedules"), FILE_ID)
    assert "2026-03-03T03:00:00+01:00" in last and 'class="last-run"' in last and 'data-state="PENDING"' in last


def test_a_fire_of_the_loop_shows_as_the_last_fire(client: FlaskClient, book: Any, settings: Settings) -> None:
    """A run made by the firing loop (not a backfill) is linked from its schedule's card and page."""
    two_hours_ago = iso_utc(time.time() - 7200)
    made = book.create({"task": SLOT, "interval_s": 3600, "fire_time_param": "when", "start": two_hours_ago})
    loop = ScheduleLoop(closed_at_end(Nectar(settings)).schedules)
    loop.tick()
    view = book.view(made.id)
    assert view.last_fire is not None and view.last_fire.run_id, view
    card = card_of(html(client, "/ui/schedules"), made.id)
    assert f'href="/ui/runs/{view.last_fire.run_id}"' in card
    assert view.spec.timing.iso(view.last_fire.fire_time) in card


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"start": "March", "end": "2026-03-03"}, "start", "not an ISO 8601 date or date-time: 'March'"),
        ({"start": "2026-03-03", "end": "2026-03-01"}, "end", "is before start"),
        ({"start": "2026-03-03", "end": "2999-01-01"}, "end", "is in the future"),
        ({"end": "2026-03-01"}, "start", "required"),
        ([], "body", "must be a JSON object"),
    ],
)
def test_a_bad_backfill_range_is_a_422_naming_its_field(
    client: FlaskClient, book: Any, body: Any, field: str, says: str
) -> None:
    answer = post(client, f"/ui/schedules/{FILE_ID}/backfill", body, 422)
    assert says in " ".join(answer["errors"][field]), answer
    assert book.fires(FILE_ID) == []


def test_bad_pause_values_and_unknown_schedules(client: FlaskClient, book: Any) -> None:
    answer = post(client, f"/ui/schedules/{FILE_ID}/paused", {"paused": "yes"}, 422)
    assert "must be true or false" in answer["errors"]["paused"][0]
    missing = post(client, "/ui/schedules/nope/paused", {"paused": True}, 404)
    assert missing["message"] == "no schedule nope"
    assert "no schedule nope" in html(client, "/ui/schedules/nope", 404)


def test_actions_refuse_other_sites_and_want_a_write_token(settings: Settings, daily: Path) -> None:
    client = build_app(settings).test_client()
    url = f"/ui/schedules/{FILE_ID}/paused"
    refused = post(client, url, {"paused": True}, 403, Origin="https://evil.example")
    assert "another site" in refused["message"]
    secured = build_app(settings.replace(api_tokens=f"{digest('t0ken').hex()}:write", auth_reads=False)).test_client()
    post(secured, url, {"paused": True}, 401)
    post(secured, url, {"paused": True}, 200, Authorization="Bearer t0ken")


# --- in Chromium ----------------------------------------------------------------------------------


def test_pause_resume_and_backfill_in_the_browser(page: Any, site: Site, screenshots: Path) -> None:
    path = site.settings.chains_dir / "daily" / "sales_chain.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(DAILY_CHAIN)
    books = closed_at_end(Nectar(site.settings)).schedules
    made = books.create({"task": SLOT, "cron": "*/15 * * * *", "fire_time_param": "when", "params": {"label": "api"}})

    page.goto(f"{site.url}/ui/schedules")
    daily = page.locator(f'.schedule[data-schedule-id="{FILE_ID}"]')
    api = page.locator(f'.schedule[data-schedule-id="{made.id}"]')
    expect(daily.locator(".when")).to_have_text("0 3 * * * (Europe/Paris)")
    expect(daily.locator(".source")).to_have_text("file")
    expect(api.locator(".source")).to_have_text("api")
    expect(api.locator(".next-fires div")).to_have_count(5)
    page.screenshot(path=screenshots / "schedules-1-list.png", full_page=True)

    daily.get_by_role("button", name="Pause").click()
    daily = page.locator(f'.schedule[data-schedule-id="{FILE_ID}"]')  # the page was reloaded
    expect(daily.locator(".paused-state")).to_have_text("PAUSED")
    expect(daily.locator(".next-fires")).to_have_text("none while paused")
    assert books.view(FILE_ID).paused
    daily.get_by_role("button", name="Resume").click()
    expect(page.locator(f'.schedule[data-schedule-id="{FILE_ID}"] .paused-state')).to_have_text("ACTIVE")
    assert not books.view(FILE_ID).paused

    form = page.locator(f'.schedule[data-schedule-id="{FILE_ID}"] form.backfill')
    form.locator('input[name="start"]').fill("2026-03-03")
    form.locator('input[name="end"]').fill("2026-03-01")
    form.get_by_role("button", name="Backfill").click()
    expect(form.locator('.field[data-field="end"] .field-error')).to_have_text("is before start")

    form.locator('input[name="end"]').fill("2026-03-05T12:00")
    form.get_by_role("button", name="Backfill").click()
    result = form.locator(".backfill-result")
    expect(result).to_contain_text("3 fire times in the range")
    expect(result.locator(".backfill-fires li")).to_have_count(3)
    expect(form.locator('.field[data-field="end"] .field-error')).to_be_hidden()
    page.screenshot(path=screenshots / "schedules-2-backfilled.png", full_page=True)

    result.get_by_role("link", name="Follow its progress").click()
    expect(page).to_have_url(re.compile(rf".*/ui/schedules/{re.escape(FILE_ID)}\?backfill=[0-9a-f]+$"))
    rows = page.locator("#fires tbody tr")
    expect(rows).to_have_count(3)
    for day in ("03", "04", "05"):
        row = page.locator(f'#fires tr[data-fire-time="2026-03-{day}T03:00:00+01:00"]')
        expect(row.locator(".badge").first).to_have_text("QUEUED")
        expect(row.locator(".badge").last).to_have_text("DONE", timeout=RUN_TIMEOUT_MS)  # the list refreshes itself
    page.screenshot(path=screenshots / "schedules-3-fires.png", full_page=True)

    rows.first.locator('a[href^="/ui/runs/"]').click()
    expect(page.locator("#run-schedule")).to_contain_text(f"made by schedule {FILE_ID} for 2026-03-05T02:00:00+00:00")
