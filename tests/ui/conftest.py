"""The UI's test world: the Flask test client, and for the browser tests a real Datanectar (gunicorn, a
``nectar worker``, luigid) with Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, STOP_TIMEOUT, Processes, base_env, free_port, settings_env
from nectar.config import Settings
from tests.api.conftest import app, client  # noqa: F401  (the API's app and client fixtures, shared)

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


# --- a real Datanectar ---------------------------------------------------------------------


@dataclass
class Site:
    url: str
    settings: Settings
    logs: Path

    def dump_logs(self) -> str:
        return "\n".join(f"----- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in self.logs.iterdir())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, luigid: str) -> Iterator[Site]:
    """The API under gunicorn and one ``nectar worker``, on a copy of the example chains and a local store."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(REPO / "chains", root / "chains", ignore=shutil.ignore_patterns("__pycache__"))
    settings = Settings(
        env="local",
        chains_dir=root / "chains",
        data_dir=root / "data",
        local_targets_dir=root / "targets",
        scheduler_url=luigid,
        retries=0,
        heartbeat_interval=0.5,
    ).resolved()
    port = free_port()
    env = base_env() | settings_env(settings)
    processes = Processes(root / "logs")
    try:
        processes.api(port, env, status=200)
        processes.worker(env, root, workers=2)
        yield Site(f"http://127.0.0.1:{port}", settings, processes.logs)
    finally:
        processes.close(grace=STOP_TIMEOUT)


# --- Chromium ------------------------------------------------------------------------------


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


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave their screenshots."""
    return tmp_path_factory.mktemp("screenshots")
