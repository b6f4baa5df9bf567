"""review15 (round 61): a plain luigi chain's own event handlers, registered as its file is imported (luigi's way:
``@luigi.Task.event_handler(...)`` at the module's top), fire once per event in a reused attempt process, as in a
fresh one and under ``python -m luigi``: a chain module executed anew for the next run must not leave the handlers of
the module before it registered on luigi's ``Task``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import reused
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]
CHAIN = """
import os

import luigi


@luigi.Task.event_handler(luigi.Event.START)
def started(task):
    if hasattr(task, "journal"):
        with open(task.journal, "a") as out:
            out.write(f"START {task.n} {os.getpid()}\\n")


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def succeeded(task):
    if hasattr(task, "journal"):
        with open(task.journal, "a") as out:
            out.write(f"SUCCESS {task.n} {os.getpid()}\\n")


#: a module global each run appends to: the module is executed anew for the next run (nectar.catalog.kept)
SEEN = []


class HandledTask(luigi.Task):
    n = luigi.IntParameter()
    journal = luigi.Parameter()

    def run(self):
        SEEN.append(self.n)
"""


@pytest.mark.xfail(
    strict=True,
    reason="review15 F1: a chain module executed anew for a reused process's next run leaves its last execution's "
    "handlers on luigi.Task._event_callbacks (nectar.luigi_internals.forget_task_classes forgets its classes only); "
    "the n-th execution in a process fires each event n times. For the lead to fix at the merge.",
)
def test_a_plain_chains_own_event_handlers_fire_once_per_event_in_a_reused_process(
    settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], start_worker: StartWorker, tmp_path: Path
) -> None:
    write_chain("review15/events_chain", CHAIN)
    reusing = settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=0, retry_delay=0)
    nectar = closed_at_end(Nectar(reusing))
    start_worker(reusing, workers=1)
    journal = tmp_path / "journal.txt"
    runs: list[Run] = []

    def next_reused() -> bool:
        submission = nectar.submit("review15", "events_chain", "HandledTask", {"n": len(runs), "journal": str(journal)})
        assert submission.run is not None
        runs.append(ended(nectar, submission.run.id))
        assert runs[-1].state == RunState.DONE, runs[-1]
        return reused(runs[-1]) and len(runs) >= 3

    wait_until(next_reused, timeout=120, interval=0)
    seen = journal.read_text().splitlines()
    for n, run in enumerate(runs):
        mine = [line.rsplit(" ", 1)[0] for line in seen if line.split()[1] == str(n)]
        assert mine == [f"START {n}", f"SUCCESS {n}"], (run.worker, pid_of(run), seen)
