"""The issue's check, on S3 and PostgreSQL: 1,000 objects written in bursts to moto's S3 while three ``nectar clock``
processes race on one PostgreSQL registry, one SIGKILLed half-way and restarted; each object executed exactly once,
counted from the task's own ledger (the same on a folder and SQLite: ``test_exactly_once_local.py``, a file of its
own so that the two run side by side)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.triggers.racing import Landing, land_in_bursts, landing  # noqa: F401 (a fixture)


@pytest.mark.parametrize("registry", ["postgres"], indirect=True)
def test_1000_objects_on_s3_run_once_each_with_one_of_3_clocks_killed_half_way(
    landing: Landing,  # noqa: F811
    request: pytest.FixtureRequest,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """Objects written 50 at a time while 3 clocks poll one PostgreSQL registry; the first clock is SIGKILLed once
    half of them are claimed and another started: the task ran once for each object, and the registry agrees."""
    land_in_bursts(landing, request, start_worker, tmp_path, "s3", clocks=3)
