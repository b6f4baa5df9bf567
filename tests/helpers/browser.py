"""Debian's Chromium driven by Playwright, one browser for the whole session (Playwright's sync API allows one
per thread: a second would fail "using Playwright Sync API inside the asyncio loop"), for every test that opens
pages: a plugin of the root conftest, so no test module defines its own copy of these fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.debian import NotInstalled, install

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: how long an ``expect`` waits for what a page shows, and an action (``goto``, a click, a fill) for its page or
#: element, before the test fails (Playwright's own 5 s and 30 s are missed by a page waiting on a loaded API): 60 s,
#: the suite's least deadline, which only fails a hung page
EXPECT_TIMEOUT_MS = 60_000


def expect(actual: Any) -> Any:
    """Playwright's ``expect(actual)``, its module imported as a test first asks (~0.12 s of CPU): every pytest-xdist
    worker collects the browser tests' modules, and most never open a page."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(actual)


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:  # fail the tests, never skip them, if it cannot be installed
        install("chromium", CHROMIUM.exists)
    except NotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright  # never `playwright install`: Debian's Chromium

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh browser page (1280x900); what the page logs to its console is printed when a test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)  # its pages' actions and navigations alike
    opened = context.new_page()
    opened.on("console", lambda message: print(f"console {message.type}: {message.text}"))
    opened.on("pageerror", lambda error: print(f"page error: {error}"))
    yield opened
    context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave their screenshots."""
    return tmp_path_factory.mktemp("screenshots")
