"""In a real Chromium against the API under gunicorn with tokens on (issue 17, point 8): the token field opens an
HttpOnly session no script can read, emptying it ends the session, and Swagger UI starts under the docs page's CSP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import STOP_TIMEOUT, Processes, base_env
from nectar.auth import digest
from nectar.config import Settings
from tests.conftest import REPO, settings_env, wait_until
from tests.helpers.browser import expect

TOKEN = "browser-reader-token-0123456789"


@pytest.fixture(scope="module")
def secured_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API alone under gunicorn (no scheduler, no worker: these tests run nothing), with a read token."""
    root = tmp_path_factory.mktemp("secured")
    shutil.copytree(REPO / "chains", root / "chains", ignore=shutil.ignore_patterns("__pycache__"))
    settings = Settings(
        env="local",
        chains_dir=root / "chains",
        data_dir=root / "data",
        local_targets_dir=root / "targets",
        api_tokens=f"{digest(TOKEN).hex()}:read:browser",
    ).resolved()
    processes = Processes(root / "logs")
    try:
        port = processes.api(None, base_env() | settings_env(settings), status=200).port
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.close(grace=STOP_TIMEOUT)


@pytest.fixture
def tab(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("page")


def test_the_token_field_opens_a_session_no_script_can_read_and_emptying_it_ends_it(
    tab: Any, secured_api: str, tmp_path: Path
) -> None:
    tab.goto(f"{secured_api}/ui/runs")
    expect(tab.locator("h1")).to_have_text("API token needed")
    tab.fill("#api-token", TOKEN)
    tab.locator("#api-token").dispatch_event("change")  # the page reloads once the session is open
    expect(tab.locator("h1")).to_have_text("Runs")
    # the reloaded page's deferred script has set the field up (its value from the tab's storage, its change
    # listener) before the test touches it: its heading alone shows only that the page was parsed
    tab.wait_for_load_state("load")

    [cookie] = [c for c in tab.context.cookies() if c["name"] == "nectar_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain http here
    assert TOKEN not in cookie["value"] and digest(TOKEN).hex() not in cookie["value"]
    seen_by_scripts = tab.evaluate("document.cookie")
    assert "nectar_session" not in seen_by_scripts and TOKEN not in seen_by_scripts

    tab.fill("#api-token", "")
    tab.locator("#api-token").dispatch_event("change")
    wait_until(lambda: not [c for c in tab.context.cookies() if c["name"] == "nectar_session"], timeout=60)
    tab.reload()
    expect(tab.locator("h1")).to_have_text("API token needed")


def test_swagger_ui_starts_under_the_docs_page_csp(tab: Any, secured_api: str) -> None:
    refused: list[str] = []

    def note(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    tab.on("console", note)
    tab.goto(f"{secured_api}/api/docs")
    expect(tab.locator(".swagger-ui .info .title")).to_contain_text("Datanectar")
    expect(tab.locator(".opblock").first).to_be_visible()
    assert refused == [], refused
