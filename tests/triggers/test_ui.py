"""The triggers page: every trigger (file and API) with what it watches and how far it has got, pause and resume, a
trigger's objects with their runs, a listing's error; a run made by a trigger says so. Through the test client, then
in Chromium against a real Datanectar (gunicorn and a worker)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.api.conftest import build_app
from tests.helpers.browser import expect
from tests.helpers.registries import closed_at_end
from tests.triggers.test_api import FILE_TRIGGER, LOAD_FILE
from tests.triggers.test_core import LANDING_CHAIN, declared, land, landing, nectar  # noqa: F401  (fixtures)
from tests.ui.conftest import Site, site  # noqa: F401  (a real Datanectar, for the browser)
from tests.ui.test_pages import Elements, html
from tests.ui.test_schedules_ui import post


@pytest.fixture
def client(settings: Settings, nectar: Nectar) -> FlaskClient:  # noqa: F811
    return build_app(settings).test_client()


def card_of(page: str, trigger_id: str) -> str:
    """The markup of one trigger's card."""
    found = re.search(
        rf'<section class="card trigger" data-trigger-id="{re.escape(trigger_id)}".*?</section>', page, re.S
    )
    assert found, f"no card of {trigger_id} in the page"
    return found.group(0)


def test_the_page_lists_file_and_api_triggers_and_the_ones_declared_wrong(
    client: FlaskClient,
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    declared: Path,  # noqa: F811
) -> None:
    made = nectar.triggers.create(
        {"task": "ingest/landing_chain/LoadManyTask", "prefix": str(landing), "param": "paths", "batch_size": 5,
         "params": {"label": "<b>x</b>"}}
    )  # fmt: skip
    paths = land(declared, "a.csv", "b.csv")
    TriggerLoop(nectar.triggers).tick()

    page = html(client, "/ui/triggers")

    assert 'href="/ui/triggers"' in page  # in the navigation
    file = card_of(page, FILE_TRIGGER)
    assert ">file</span>" in file and LOAD_FILE in file and 'href="/ui/ingest/landing_chain/LoadFileTask"' in file
    assert f'{declared} <span class="glob">(*.csv)</span>' in file and "ingest/landing_chain.py" in file
    assert 'data-state="ACTIVE"' in file and ">Pause</button>" in file
    assert '<span class="objects-seen">2</span>' in file and '<span class="runs-made">2</span>' in file
    assert '<span class="files-waiting">2</span>' in file and "b.csv" in file and paths[1] in file
    api = card_of(page, made.id)
    assert ">api</span>" in api and "paths = each group of up to 5 objects" in api
    assert "label = &lt;b&gt;x&lt;/b&gt;" in api and "<b>x</b>" not in api
    assert f'data-url="/ui/triggers/{made.id}/paused"' in api and '<span class="objects-seen">0</span>' in api
    errors = re.search(r'<div class="alert alert-error" id="trigger-errors".*?</div>', page, re.S)
    assert errors and '<span class="mono">ingest/landing_chain</span>' in errors.group(0), page
    assert "BrokenTask" in errors.group(0) and "param" in errors.group(0)


def test_a_triggers_page_lists_its_objects_and_a_run_names_its_trigger(
    client: FlaskClient,
    nectar: Nectar,  # noqa: F811
    declared: Path,  # noqa: F811
) -> None:
    paths = land(declared, "a.csv", "b.csv")
    TriggerLoop(nectar.triggers).tick()

    page = html(client, f"/ui/triggers/{FILE_TRIGGER}")

    rows = re.findall(r'<tr data-object-key="([^"]+)">.*?href="/ui/runs/([0-9a-f]{32})"', page, re.S)
    assert [key for key, _ in rows] == ["b.csv", "a.csv"], page  # newest first
    run_page = html(client, f"/ui/runs/{rows[0][1]}")
    assert "run-trigger" in Elements(run_page).by_id
    assert f'made by trigger <a href="/ui/triggers/{FILE_TRIGGER}" class="mono">{FILE_TRIGGER}</a>' in run_page
    assert f'for <span class="mono run-objects">{paths[1]}</span>' in run_page
    made_by = f'made by trigger <a href="/ui/triggers/{FILE_TRIGGER}" class="mono">{FILE_TRIGGER}</a></div>'
    assert html(client, "/ui/runs").count(made_by) == 2


def test_the_runs_of_a_triggers_objects_are_told_apart_by_the_part_of_their_ids_shown(
    client: FlaskClient,
    nectar: Nectar,  # noqa: F811
    declared: Path,  # noqa: F811
) -> None:
    """Two runs fired by one poll (their ids time-ordered: the same first 8 hex digits for ~65 s of runs) are shown
    by 8 digits of their own each, on the trigger's page and in their run page's title (on main: the first 8, the
    same for both)."""
    land(declared, "a.csv", "b.csv")
    TriggerLoop(nectar.triggers).tick()

    page = html(client, f"/ui/triggers/{FILE_TRIGGER}")

    rows = re.findall(r'<tr data-object-key="[^"]+">.*?href="/ui/runs/([0-9a-f]{32})">([0-9a-f]+)</a>', page, re.S)
    assert len(rows) == 2 and rows[0][0] != rows[1][0], page
    assert all(run_id.endswith(shown) and len(shown) == 8 for run_id, shown in rows), rows
    assert rows[0][1] != rows[1][1], rows
    titles = {re.findall(r"<title>([^<]*)</title>", html(client, f"/ui/runs/{run_id}"))[0] for run_id, _ in rows}
    assert titles == {f"Run {shown} · Datanectar" for _, shown in rows}, titles


def test_a_listing_that_fails_is_shown_on_its_card(
    client: FlaskClient,
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
) -> None:
    made = nectar.triggers.create({"task": LOAD_FILE, "prefix": str(landing), "param": "path"})
    shutil.rmtree(landing)
    TriggerLoop(nectar.triggers).tick()

    card = card_of(html(client, "/ui/triggers"), made.id)

    found = re.search(r'<div class="alert alert-error listing-error".*?</div>', card, re.S)
    assert found and str(landing) in found.group(0), card


def test_pause_and_resume_a_file_trigger(client: FlaskClient, nectar: Nectar) -> None:  # noqa: F811
    url = f"/ui/triggers/{FILE_TRIGGER}/paused"
    assert post(client, url, {"paused": True}, 200)["data"]["paused"] is True
    assert nectar.triggers.view(FILE_TRIGGER).paused
    paused = card_of(html(client, "/ui/triggers"), FILE_TRIGGER)
    assert 'data-state="PAUSED"' in paused and ">Resume</button>" in paused

    assert post(client, url, {"paused": False}, 200)["data"]["paused"] is False
    assert not nectar.triggers.view(FILE_TRIGGER).paused
    assert ">Pause</button>" in card_of(html(client, "/ui/triggers"), FILE_TRIGGER)


def test_bad_pause_values_and_unknown_triggers(client: FlaskClient) -> None:
    answer = post(client, f"/ui/triggers/{FILE_TRIGGER}/paused", {"paused": "yes"}, 422)
    assert "must be true or false" in answer["errors"]["paused"][0]
    missing = post(client, "/ui/triggers/nope/paused", {"paused": True}, 404)
    assert missing["message"] == "no trigger nope"
    assert "no trigger nope" in html(client, "/ui/triggers/nope", 404)


def test_pausing_refuses_other_sites(client: FlaskClient) -> None:
    refused = post(client, f"/ui/triggers/{FILE_TRIGGER}/paused", {"paused": True}, 403, Origin="https://evil.example")
    assert "another site" in refused["message"]


# --- in Chromium ----------------------------------------------------------------------------------


def test_pause_and_resume_in_the_browser(page: Any, site: Site, screenshots: Path, tmp_path: Path) -> None:  # noqa: F811
    watched = tmp_path / "declared"
    watched.mkdir()
    chain = site.settings.chains_dir / "ingest" / "landing_chain.py"
    chain.parent.mkdir(exist_ok=True)
    chain.write_text(LANDING_CHAIN.format(declared=str(watched)))
    book = closed_at_end(Nectar(site.settings)).triggers

    page.goto(f"{site.url}/ui/triggers")
    card = page.locator(f'.trigger[data-trigger-id="{FILE_TRIGGER}"]')
    expect(card.locator(".source")).to_have_text("file")
    expect(card.locator(".paused-state")).to_have_text("ACTIVE")
    page.screenshot(path=screenshots / "triggers-1-list.png", full_page=True)

    card.get_by_role("button", name="Pause").click()
    card = page.locator(f'.trigger[data-trigger-id="{FILE_TRIGGER}"]')  # the page was reloaded
    expect(card.locator(".paused-state")).to_have_text("PAUSED")
    assert book.view(FILE_TRIGGER).paused
    page.screenshot(path=screenshots / "triggers-2-paused.png", full_page=True)
    card.get_by_role("button", name="Resume").click()
    expect(page.locator(f'.trigger[data-trigger-id="{FILE_TRIGGER}"] .paused-state')).to_have_text("ACTIVE")
    assert not book.view(FILE_TRIGGER).paused
    chain.unlink()  # the site is the module's: leave its chains as they were
