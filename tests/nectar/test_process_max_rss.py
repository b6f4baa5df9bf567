"""``NECTAR_PROCESS_MAX_RSS_MB``: an attempt process that holds more than it after a run (a real task that allocates
and keeps what it allocated) takes no other run: it exits, saying why, its run DONE; its next run is another
process's. A process under the bound takes the next one (README, Chains: a worker's process takes another run)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.faults.conftest import alive
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import CHAIN, StartWorker, output, submit, until_reused
from tests.nectar.test_spare import KEPT, ended, pid_of

#: the bound the worker is given, and what a run of HoldTask keeps past it (MB)
BOUND_MB, HELD_MB = 200, 300

HOLD_CHAIN = """
import builtins

import luigi
from nectar import NectarTask
from nectar.reuse import rss_mb


class HoldTask(NectarTask):
    n = luigi.IntParameter()
    mb = luigi.IntParameter()

    def run(self):
        # written, so resident; kept where the next run of the process would find it (the chain's module is new)
        builtins.__dict__.setdefault("held_by_runs", []).append(b"\\x01" * (self.mb * 2**20))
        with self.output().open("w") as out:
            out.write(f"{rss_mb():.0f}\\n")
"""


@pytest.fixture
def bounded(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    """A worker's settings with the bound, on the reuse chain (as test_reuse's) and the hold chain."""
    write_chain("reuse/reuse_chain", CHAIN.format(version="v1"))
    write_chain("reuse/hold_chain", HOLD_CHAIN)
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, process_max_rss_mb=BOUND_MB)


def test_a_process_holding_more_than_the_bound_after_its_run_exits_and_the_next_run_is_anothers(
    bounded: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    nectar = closed_at_end(Nectar(bounded))
    start_worker(bounded, workers=1)
    below = until_reused(nectar, 1)  # under the bound, a process takes run after run

    submission = nectar.submit("reuse", "hold_chain", "HoldTask", {"n": 1, "mb": HELD_MB})
    assert submission.run is not None
    held = ended(nectar, submission.run.id)

    assert held.state == RunState.DONE and int(output(nectar, held)) > BOUND_MB
    wait_until(lambda: not alive(pid_of(held)), timeout=60)
    said = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    assert f"attempt process {pid_of(held)} exits after " in said, said
    assert f"MB, above {BOUND_MB} MB" in said, said
    after = ended(nectar, submit(nectar, "CountTask", n=100))
    assert after.state == RunState.DONE and pid_of(after) != pid_of(held)
    assert all(run.state == RunState.DONE for run in below)
