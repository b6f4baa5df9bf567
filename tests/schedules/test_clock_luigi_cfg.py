"""``nectar clock`` reads the project's luigi.cfg (``NECTAR_LUIGI_CONFIG``) as luigi does: a scheduled task's
parameter that luigi.cfg sets (``[<TaskFamily>] name = value``) is luigi.cfg's in the run the clock submits, as in the
task ``python -m luigi`` runs from the same luigi.cfg (the clock took the code's default)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Processes
from harness.processes import REPO
from nectar.config import Settings
from tests.schedules.firing import TICK_CHAIN, Firing, iso


@pytest.fixture
def configured_firing(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    processes: Processes,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Iterator[Firing]:
    """The Tick chain on the SQLite registry, its settings' luigi.cfg the project's setting its ``label``
    (its section the task's family: its chain's namespace, ``daily.tick_chain``, and its name)."""
    ledger = tmp_path / "ledger.txt"
    write_chain("daily/tick_chain", TICK_CHAIN.format(ledger=str(ledger)))
    config = tmp_path / "luigi.cfg"
    own_section = "\n[daily.tick_chain.TickTask]\nlabel = cfg\n"
    config.write_text((REPO / "configuration" / "luigi.cfg").read_text() + own_section)
    made = Firing(settings.replace(luigi_config=config), processes, ledger, start_worker)
    yield made
    made.nectar.close()


def test_a_scheduled_runs_parameter_is_the_one_luigi_cfg_sets(configured_firing: Firing) -> None:
    firing = configured_firing
    sid = firing.create(interval_s=1, catchup="latest", start=iso(float(int(time.time()) - 5)))
    firing.clock()
    (run, *_) = firing.wait(firing.scheduled_runs, f"a run of schedule {sid} submitted by the clock")
    assert run.params["label"] == "cfg", run.params
