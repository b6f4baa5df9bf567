"""A worker's spare attempt process: forked before there is work, it executes the next claimed run."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.leases import HOST
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.faults.conftest import alive, children

StartWorker = Callable[..., subprocess.Popen[bytes]]
QUICK_CHAIN = """
import luigi
from nectar import NectarTask


class QuickTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.n}\\n")
"""


@pytest.fixture
def quick(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    write_chain("quick/quick_chain", QUICK_CHAIN)
    return settings.replace(scheduler_url=luigid)


def spare_of(worker: subprocess.Popen[bytes]) -> int:
    """The pid of the worker's only child while it is idle: its spare."""
    found = wait_until(lambda: (kids := children(worker.pid)) and len(kids) == 1 and kids, timeout=30)
    assert isinstance(found, list)
    return int(found[0])


def ended(nectar: Nectar, run_id: str) -> Run:
    run = wait_until(lambda: (r := nectar.runs.get(run_id)) and not r.state.active and r, timeout=60)
    assert isinstance(run, Run)
    return run


def submit(nectar: Nectar, n: int) -> str:
    submission = nectar.submit("quick", "quick_chain", "QuickTask", {"n": n})
    assert submission.run is not None
    return submission.run.id


def test_the_spare_executes_the_next_run_and_another_takes_its_place(
    quick: Settings, start_worker: StartWorker
) -> None:
    nectar = Nectar(quick)
    worker = start_worker(quick, workers=1)
    spare = spare_of(worker)

    run = ended(nectar, submit(nectar, 1))

    assert run.state == RunState.DONE and run.attempt == 1
    assert run.worker == f"{HOST}:{spare}"  # claimed in the spare's name: a dead spare is reclaimed by pid
    assert spare_of(worker) != spare
    assert not alive(spare)


def test_a_spare_killed_before_its_run_costs_the_run_no_attempt(quick: Settings, start_worker: StartWorker) -> None:
    nectar = Nectar(quick)
    worker = start_worker(quick, workers=1)
    spare = spare_of(worker)
    os.kill(spare, signal.SIGKILL)
    wait_until(lambda: not alive(spare), timeout=10)  # dead (a zombie: its pipe is closed), not dying

    run = ended(nectar, submit(nectar, 2))

    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None)
    assert run.worker != f"{HOST}:{spare}"
    assert worker.poll() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_worker_leaves_no_spare_behind(
    quick: Settings, start_worker: StartWorker, signum: int
) -> None:
    worker = start_worker(quick, workers=1)
    spare = spare_of(worker)

    worker.send_signal(signum)
    worker.wait(timeout=30)

    wait_until(lambda: not alive(spare), timeout=10)  # a killed worker's spare sees its pipe close


def test_luigi_failing_to_set_up_fails_the_run_naming_why(
    quick: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A spare that cannot prepare the luigi build leaves it to the attempt, which fails with the reason."""
    bad = tmp_path / "luigi.cfg"
    bad.write_text("[worker]\nwait_interval = 0\n")
    settings = quick.replace(luigi_config=bad)
    nectar = Nectar(settings)
    worker = start_worker(settings, workers=1)

    run = ended(nectar, submit(nectar, 3))

    assert run.state == RunState.FAILED
    assert "wait_interval must be positive" in (run.error or "")
    assert worker.poll() is None
    spare_of(worker)  # still serving, with a new spare
