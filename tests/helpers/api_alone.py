"""The service's API alone under gunicorn against a luigid a test already has (the session's): one helper for the
tests that POST to it and run the submission with a worker of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import Processes
from nectar.config import Settings


@contextmanager
def api_alone(settings: Settings, luigid: str, logs: Path) -> Iterator[int]:
    """The API of ``settings`` on luigid ``luigid``, its logs in ``logs``; its port, until the block ends."""
    processes = Processes(logs)
    try:
        yield processes.nectar_api(settings.replace(scheduler_url=luigid)).port
    finally:
        processes.close()
