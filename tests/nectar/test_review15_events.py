"""review15 (round 61): a plain luigi chain's own event handlers, registered as its file is imported (luigi's way:
``@luigi.Task.event_handler(...)`` at the module's top), fire once per event in a reused attempt process, as in a
fresh one and under ``python -m luigi``: a chain module executed anew for the next run must not leave the handlers of
the module before it registered on luigi's ``Task``."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import luigi
import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import reused
from tests.nectar.test_review15_luigid_view import Served, luigi_then_served, served  # noqa: F401 (a fixture)
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


ORDER_CHAIN = """
import os

import luigi


class Journaled(luigi.Task):
    n = luigi.IntParameter()

    def journal(self, line):
        with open(os.path.join(os.environ["REVIEW15_OUT"], f"events-{self.n}"), "a") as out:
            out.write(line + "\\n")

    def complete(self):  # each ask noted with the process that asked (the test's own: the submission's)
        with open(os.path.join(os.environ["REVIEW15_OUT"], f"complete-{self.n}"), "a") as out:
            out.write(f"{os.getpid()} {self.task_family}\\n")
        return super().complete()


def noting(event):
    def note(task, *args):
        task.journal(f"{event} {task.task_family} {' '.join(type(arg).__name__ for arg in args)}".strip())

    return note


for event in (
    luigi.Event.DEPENDENCY_DISCOVERED, luigi.Event.DEPENDENCY_MISSING, luigi.Event.DEPENDENCY_PRESENT,
    luigi.Event.BROKEN_TASK, luigi.Event.START, luigi.Event.SUCCESS, luigi.Event.FAILURE,
):
    Journaled.event_handler(event)(noting(event))


class MadeTask(Journaled):
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"made-{self.n}"))

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")


class ThereTask(Journaled):  # complete before the run: its file is made by the test
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"there-{self.n}"))


class TopTask(Journaled):
    def requires(self):
        return [ThereTask(n=self.n), MadeTask(n=self.n)]

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW15_OUT"], f"top-{self.n}"))

    def run(self):
        self.journal("run TopTask")
        with self.output().open("w") as out:
            out.write("top\\n")

    def on_success(self):
        self.journal("on_success TopTask")
        return super().on_success()


class FailsTask(Journaled):
    def requires(self):
        return ThereTask(n=self.n)

    def run(self):
        self.journal("run FailsTask")
        raise RuntimeError("boom")

    def on_failure(self, exception):
        self.journal(f"on_failure FailsTask {type(exception).__name__}")
        return super().on_failure(exception)


class BrokenCompleteTask(Journaled):
    def requires(self):
        return ThereTask(n=self.n)

    def complete(self):
        super().complete()  # noted
        raise RuntimeError("complete() broke")

    def run(self):
        self.journal("run BrokenCompleteTask")


class NoOutputTask(Journaled):
    def requires(self):
        return ThereTask(n=self.n)

    def run(self):
        self.journal("run NoOutputTask")
"""


@pytest.mark.parametrize(
    ("task", "state", "base"),
    [
        ("TopTask", RunState.DONE, 100),
        ("FailsTask", RunState.FAILED, 200),
        ("NoOutputTask", RunState.DONE, 300),
        ("BrokenCompleteTask", RunState.FAILED, 400),
    ],
)
def test_a_plain_tasks_events_and_hooks_come_in_luigis_order_in_fresh_and_reused_processes(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    task: str,
    state: RunState,
    base: int,
) -> None:
    """Each event luigi's worker fires for a step (with what it passes), and the task's run and hooks, in luigi's
    order, for a task with a dependency complete and one to run, one that fails, one without outputs; and each task's
    ``complete()`` asked in the attempt as often as luigi asks it (a user's may be dear, an S3 listing, or have
    effects), and once more only by the submission (its dedupe), in the process that submits."""
    runs = luigi_then_served(served, write_chain("review15/order_chain", ORDER_CHAIN), task, base, state)
    expected = (tmp_path / f"events-{base}").read_text().splitlines()
    assert f"{luigi.Event.START} {task}" in expected or task.startswith("Broken"), expected
    asks = asked(tmp_path, base)
    for n, run in runs:
        assert (tmp_path / f"events-{n}").read_text().splitlines() == expected, run.worker
        assert asked(tmp_path, n) == asks, (run.worker, asks)
        assert asked(tmp_path, n, submitted=True) == Counter([task]), run.worker


def asked(out: Path, n: int, submitted: bool = False) -> Counter[str]:
    """How many times each task's ``complete()`` was asked for ``n``, by family: by this process (the submission's)
    if ``submitted``, else by any other."""
    lines = (out / f"complete-{n}").read_text().splitlines()
    return Counter(family for pid, family in map(str.split, lines) if (int(pid) == os.getpid()) == submitted)
