"""``nectar clock`` reads the project's luigi.cfg (``NECTAR_LUIGI_CONFIG``) as luigi does: a scheduled task's
parameter that luigi.cfg sets (``[<TaskFamily>] name = value``) is luigi.cfg's in the run the clock submits, as in the
task ``python -m luigi`` runs from the same luigi.cfg (the clock took the code's default)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.processes import REPO
from nectar.config import Settings
from tests.schedules.firing import Firing, iso


@pytest.fixture
def registry(settings: Settings, tmp_path: Path) -> Settings:
    """The SQLite registry (this module's own, over conftest's of each kind), its settings' luigi.cfg the project's
    setting the Tick chain's ``label`` (its section the task's family: its chain's namespace, ``daily.tick_chain``,
    and its name): conftest's ``firing`` runs on it."""
    config = tmp_path / "luigi.cfg"
    own_section = "\n[daily.tick_chain.TickTask]\nlabel = cfg\n"
    config.write_text((REPO / "configuration" / "luigi.cfg").read_text() + own_section)
    return settings.replace(luigi_config=config)


def test_a_scheduled_runs_parameter_is_the_one_luigi_cfg_sets(firing: Firing) -> None:
    sid = firing.create(interval_s=1, catchup="latest", start=iso(float(int(time.time()) - 5)))
    firing.clock()
    (run, *_) = firing.wait(firing.scheduled_runs, f"a run of schedule {sid} submitted by the clock")
    assert run.params["label"] == "cfg", run.params
