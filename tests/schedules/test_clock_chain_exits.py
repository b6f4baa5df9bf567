"""A chain file that calls ``sys.exit`` as it is imported stops neither ``nectar clock`` nor ``nectar serve``'s clock
(``nectar worker --clock``): the other chains' schedules fire."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import NECTAR
from tests.schedules.firing import Firing

#: a chain that ends the process importing it, the way a script's guard does
SYS_EXIT_CHAIN = """
import sys

sys.exit(3)
"""


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", [["clock"], ["worker", "--workers", "1", "--clock"]], ids=["clock", "serve"])
def test_a_chain_calling_sys_exit_as_it_is_imported_stops_no_clock(
    firing: Firing, write_chain: Callable[[str, str], Path], command: list[str]
) -> None:
    """``nectar clock`` and ``nectar serve``'s worker with a chain file that calls ``sys.exit(3)`` at its top beside
    the Tick chain: a schedule of Tick (every second) fires, and the clock's process is alive. Before, the probe
    left the file at the start, the loops then executed it in their threads and ``SystemExit`` ended each loop
    (the passes catch ``Exception``): no fire was ever made."""
    sid = firing.create(interval_s=1)
    write_chain("probes/sysexit_chain", SYS_EXIT_CHAIN)
    clock: subprocess.Popen[bytes] = firing.processes.start("clock", [*NECTAR, *command], firing.env)
    firing.wait_count(sid, 2, "the schedule to fire twice")
    assert clock.poll() is None
    failing = {chain.ref: chain.error for chain in firing.nectar.chains() if chain.error}
    assert failing == {"probes/sysexit_chain": "SystemExit: 3 (sysexit_chain.py, line 4)"}
