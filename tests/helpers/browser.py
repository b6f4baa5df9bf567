"""Debian's Chromium driven by Playwright, one browser for the whole session (Playwright's sync API allows one
per thread: a second would fail "using Playwright Sync API inside the asyncio loop"), for every test that opens
pages: a plugin of the root conftest, so no test module defines its own copy of these fixtures."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
#: how long an ``expect`` waits for what a page shows before the test fails (Playwright's own 5 s is missed by a
#: page waiting on a loaded API); it only fails a hung page, as the 30 s of its actions
EXPECT_TIMEOUT_MS = 30_000


def install_chromium() -> None:
    """Install Debian's chromium with apt-get (CI runs as root); fail the tests, never skip them, if impossible."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"{CHROMIUM} is missing and `{' '.join(argv)}` could not run: {exc}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"{CHROMIUM} is missing and `{' '.join(argv)}` failed ({done.returncode}):\n{done.stderr[-3000:]}",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        install_chromium()
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium, yet {CHROMIUM} does not exist", pytrace=False)
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
    opened = context.new_page()
    opened.on("console", lambda message: print(f"console {message.type}: {message.text}"))
    opened.on("pageerror", lambda error: print(f"page error: {error}"))
    yield opened
    context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave their screenshots."""
    return tmp_path_factory.mktemp("screenshots")
