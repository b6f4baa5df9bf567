"""The issue's check on a local folder and SQLite: 1,000 files landing in bursts while two ``nectar clock`` processes
race on one registry, one SIGKILLed half-way and restarted; each file executed exactly once, from the task's ledger."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.triggers.racing import Landing, land_in_bursts, landing  # noqa: F401 (a fixture)


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
def test_1000_files_run_once_each_with_one_of_2_clocks_killed_half_way(
    landing: Landing,  # noqa: F811
    request: pytest.FixtureRequest,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """Files land 50 at a time (hidden, then renamed) while 2 clocks poll one SQLite registry; the first clock is
    SIGKILLed once half of them are claimed and another started: the task ran once for each file."""
    land_in_bursts(landing, request, start_worker, tmp_path, "local", clocks=2)
