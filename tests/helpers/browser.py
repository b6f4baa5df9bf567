"""A browser for the tests: Debian's Chromium (installed with apt-get if missing) driven by Playwright's sync API.

One plugin, registered by tests/conftest.py, so that every test file shares the one session browser: a
second ``sync_playwright()`` in the same process (a copy of these fixtures imported into a test module)
refuses to start while the first runs.
"""

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
    from playwright.sync_api import sync_playwright  # the test extra; never `playwright install`: Debian's Chromium

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
