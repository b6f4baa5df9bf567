"""One API under gunicorn for a test module whose tests leave it as they found it: a start and a stop of the API
cost ~1 s of CPU (gunicorn's master importing the app, a worker), once per module instead of once per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import REPO, STOP_TIMEOUT, Processes
from nectar.config import Settings


def local_settings(root: Path) -> Settings:
    """Local-store settings in ``root`` (a module's folder), on a copy of the repository's chains, failures final (no
    retries): what a module's API serves (tests/conftest.py's ``settings`` is a test's)."""
    shutil.copytree(REPO / "chains", root / "chains", ignore=shutil.ignore_patterns("__pycache__"))
    return Settings(
        env="local",
        chains_dir=root / "chains",
        data_dir=root / "data",
        local_targets_dir=root / "targets",
        retries=0,
    ).resolved()


@contextmanager
def module_api(root: Path) -> Iterator[int]:
    """The API of :func:`local_settings` in ``root`` under gunicorn (one worker), its port; stopped at the end."""
    processes = Processes(root / "logs")
    try:
        yield processes.nectar_api(local_settings(root)).port
    finally:
        processes.close(grace=STOP_TIMEOUT)
