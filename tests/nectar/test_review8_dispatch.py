"""review8 (round 54): an attempt's lease and luigid's view while the attempt schedules its task, through a real worker
and luigid: what the attempt holds between its claim and its step's ``run()``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.registry import RunState
from tests.conftest import wait_until
from tests.nectar.test_killed_attempt import retried_run

#: a task whose one dependency's ``complete()`` (which luigi's worker asks as the attempt adds the task, before it asks
#: luigid for a step) says it is checking, then waits for a flag file: a scheduling that takes as long as the test
#: wants, as one of a large graph's (a ``complete()`` per step, each an S3 HEAD) or of a slow store does
SLOW_TO_SCHEDULE_CHAIN = """
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class SlowToCheck(luigi.Task):
    flag = luigi.Parameter()

    def complete(self):
        Path(self.flag + ".checking").touch()
        while not Path(self.flag).exists():
            time.sleep(0.05)
        return True


class ScheduledTask(NectarTask):
    flag = luigi.Parameter()

    def requires(self):
        return SlowToCheck(flag=self.flag)

    def run(self):
        with self.output().open("w") as out:
            out.write("done\\n")
"""


def test_an_attempt_renews_its_lease_while_luigi_s_worker_adds_its_task(
    settings: Settings,
    luigid: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    """The heartbeat beats from the attempt's start, through the scheduling of its task (luigi's ``worker.add``, a
    ``complete()`` per step of the graph), not only once luigid is asked for the first step: an attempt silent for
    ``lease_timeout`` (20 s by default) while a large graph is checked is taken for lost, its run reclaimed (FAILED
    without retries, else run again by another attempt while this one still schedules). The attempt here waits in a
    dependency's ``complete()`` until the test has seen a renewal (heartbeat every 0.5 s: ``settings``)."""
    write_chain("slow/slow_chain", SLOW_TO_SCHEDULE_CHAIN)
    flag = tmp_path / "go"
    on_luigid = settings.replace(scheduler_url=luigid)
    _, _, current = retried_run(on_luigid, start_worker, ("slow", "slow_chain", "ScheduledTask"), {"flag": str(flag)})
    try:
        wait_until(lambda: Path(f"{flag}.checking").exists())
        scheduling = current()
        assert scheduling.state == RunState.RUNNING and scheduling.heartbeat_at is not None
        # the dependency's complete() waits for the flag this test has not written: any renewal from here on was made
        # while the attempt's worker was adding its task
        wait_until(lambda: (current().heartbeat_at or 0.0) > (scheduling.heartbeat_at or 0.0))
    finally:
        flag.touch()
    wait_until(lambda: current().state == RunState.DONE)
