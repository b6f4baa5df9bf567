"""A chain file whose import takes longer than the probe's budget, and then ends (a heavy library imported on a
loaded machine), has its file's schedules fired by ``nectar clock`` and ``nectar serve``'s clock (``nectar worker
--clock``) once it ended in a probe: not left unfired until the file changes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import NECTAR
from tests.conftest import wait_until
from tests.schedules.firing import Firing

#: a chain whose import is held until the test opens the gate (the time a slow import takes, which the test moves),
#: its task declaring a schedule of every second
HELD_CHAIN = """
import os
import time

import luigi
from nectar import NectarTask, Schedule

while not os.path.exists({gate!r}):
    time.sleep(0.05)


class SlowTask(NectarTask):
    schedules = [Schedule(interval_s=1, fire_time_param="when", name="held")]
    when = luigi.DateSecondParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(self.when.isoformat())
"""


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", [["clock"], ["worker", "--workers", "1", "--clock"]], ids=["clock", "serve"])
def test_a_chain_whose_import_ends_after_the_probes_budget_has_its_schedule_fired(
    firing: Firing, write_chain: Callable[[str, str], Path], tmp_path: Path, command: list[str]
) -> None:
    """The clock starts with a chain file held at its import; its probe leaves the file past the budget (said in
    its log); the gate opened (the import ends), the file's schedule fires twice. Before, the clock's probes were
    ended at the budget, and a file left so was not executed in the clock's process until it changed: its schedules
    were never read, and no fire was made."""
    gate = tmp_path / "gate"
    write_chain("slow/held_chain", HELD_CHAIN.format(gate=str(gate)))
    clock: subprocess.Popen[bytes] = firing.processes.start("clock", [*NECTAR, *command], firing.env)
    log = firing.processes.log_of[clock.pid]
    wait_until(lambda: "to import in a probe" in log.read_text(errors="replace") or clock.poll() is not None)
    assert clock.poll() is None, log.read_text()
    gate.touch()
    firing.wait_count("slow.held_chain.SlowTask.held", 2, "the file's schedule to fire twice")
    assert clock.poll() is None
