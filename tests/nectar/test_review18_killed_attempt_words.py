"""review18: a run's steps in processes of their own (``workers = 2``), their attempt killed -9: what the worker's log
says of them names what happened, not a stop of the worker, which goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from harness.procfs import alive
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, open_run_store
from tests.conftest import wait_until
from tests.nectar.test_review18_chain_leaks import EMPTY

#: two steps luigi runs at once, each in a process of its own, that note their pid and their parent's (the attempt)
#: and then wait for a gate the test never opens
PAR_CHAIN = """
import os
import time

import luigi


class Nap(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW18_OUT"], f"nap-{self.n}"))

    def run(self):
        with open(os.path.join(os.environ["REVIEW18_OUT"], "pids"), "a") as noted:
            noted.write(f"{os.getpid()} {os.getppid()}\\n")
        while not os.path.exists(os.path.join(os.environ["REVIEW18_OUT"], "gate")):
            time.sleep(0.05)


class BothTask(luigi.Task):
    workers = 2

    def requires(self):
        return [Nap(n=1), Nap(n=2)]

    def run(self):
        pass
"""


def test_steps_of_an_attempt_killed_are_not_said_ended_by_a_stopping_worker(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The worker finds the attempt killed (-9), says so ("killed by signal 9; it will be retried") and ends what it
    left, the two step processes; it is not stopping, and serves on. On main its log also says "Nap(n=1) interrupted:
    the worker is stopping" and prints each step process's traceback ending ``nectar.errors.Interrupted: the worker is
    stopping``, which sends whoever reads the log after a worker stop that did not happen."""
    out = tmp_path / "out"
    out.mkdir()
    write_chain("review18/par_chain", PAR_CHAIN)
    env = base_env() | settings_env(settings) | {"REVIEW18_OUT": str(out)}
    worker = processes.start("worker", [*NECTAR, "worker", "--workers", "1"], env, settings.data_dir.parent)
    log = processes.log_of[worker.pid]
    key = TargetKey("review18", "par_chain", "BothTask", EMPTY)
    pids = out / "pids"
    try:
        with open_run_store(settings) as runs:
            runs.submit(Run.new(key.path, "review18", "par_chain", "BothTask", {}, key.path, RetryPolicy(1, 600, 1)))
            wait_until(lambda: pids.exists() and len(pids.read_text().splitlines()) == 2)
        steps = [tuple(map(int, line.split())) for line in pids.read_text().splitlines()]
        attempt = steps[0][1]
        os.kill(attempt, signal.SIGKILL)
        wait_until(lambda: "killed by signal 9" in log.read_text(errors="replace"))
        wait_until(lambda: not any(alive(pid) for pid, _ in steps))  # the worker ended them
    finally:
        (out / "gate").touch()
    said = log.read_text(errors="replace")
    assert worker.poll() is None, said
    assert "the worker is stopping" not in said, said
