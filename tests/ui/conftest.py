"""The UI's test world: the Flask test client, and for the browser tests a real Datanectar (gunicorn, a
``nectar worker``, luigid); Chromium comes from :mod:`tests.helpers.browser`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import REPO, STOP_TIMEOUT, Processes, base_env, settings_env
from nectar.config import Settings
from tests.api.conftest import app, client  # noqa: F401  (the API's app and client fixtures, shared)

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
    env = base_env() | settings_env(settings)
    processes = Processes(root / "logs")
    try:
        port = processes.api(None, env, status=200).port
        processes.worker(env, root, workers=2)
        yield Site(f"http://127.0.0.1:{port}", settings, processes.logs)
    finally:
        processes.close(grace=STOP_TIMEOUT)
