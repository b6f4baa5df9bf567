"""A chain's code that raises a BaseException other than KeyboardInterrupt in a clock's pass (``sys.exit`` in a
task's ``complete()``, which a clock calls making each fire) is logged, and the clock's loop goes on: the schedule
fires once the code no longer raises."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import NECTAR
from tests.schedules.firing import TICK_CHAIN, Firing

#: Tick's ``complete()`` ends the process that calls it (``sys.exit(5)``) while the flag file is there
EXITING_TICK = """

import sys as _sys

FLAG = @FLAG@


def _exiting_complete(self):
    if os.path.exists(FLAG):
        _sys.exit(5)
    return luigi.Task.complete(self)


TickTask.complete = _exiting_complete
"""


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", [["clock"], ["worker", "--workers", "1", "--clock"]], ids=["clock", "serve"])
def test_a_sys_exit_in_a_chains_complete_is_logged_and_the_schedules_loop_goes_on(
    firing: Firing, write_chain: Callable[[str, str], Path], tmp_path: Path, command: list[str]
) -> None:
    """A schedule of Tick every second, its ``complete()`` raising ``SystemExit(5)`` while a flag file is there: the
    clock's log says the schedule failed, with the SystemExit; the flag removed, the schedule fires. Before, the
    passes caught ``Exception`` only: the SystemExit ended the schedules' thread without a word (no line in the log;
    the clock alive, its schedules never fired again). With only the passes' catch widened, the pass was logged once
    and the schedule never fired again: the pass had taken it off its heap of due schedules."""
    flag = tmp_path / "exit.flag"
    flag.touch()
    write_chain(
        "daily/tick_chain",
        TICK_CHAIN.format(ledger=str(firing.ledger)) + EXITING_TICK.replace("@FLAG@", repr(str(flag))),
    )
    sid = firing.create(interval_s=1)
    clock: subprocess.Popen[bytes] = firing.processes.start("clock", [*NECTAR, *command], firing.env)
    log = firing.processes.log_of[clock.pid]
    firing.wait(lambda: "SystemExit: 5" in log.read_text(errors="replace"), "the clock to log the SystemExit")
    said = log.read_text(errors="replace")
    assert f"schedule {sid} failed; trying again" in said, said
    assert firing.fires(sid) == [], "a fire made while complete() raised"
    flag.unlink()
    firing.wait_count(sid, 2, "the schedule to fire twice once complete() no longer raises")
    assert clock.poll() is None
