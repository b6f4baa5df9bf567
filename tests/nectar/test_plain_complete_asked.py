"""A plain luigi task's ``complete()`` is asked by the service's attempt (fresh or reused) as often as luigi's own
``python -m luigi`` asks it (review15 F3, round 61): a user's ``complete()`` may be dear (an S3 listing) or have
effects. Only the submission asks it once more, in the process that submits (its dedupe: a task complete is not run)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.registry import RunState
from tests.nectar.test_reuse import reused
from tests.nectar.test_review15_luigid_view import Served, served, served_runs, under_luigi  # noqa: F401 (a fixture)

CHAIN = """
import os
import traceback

import luigi


class Counted(luigi.Task):
    n = luigi.IntParameter()

    def out(self, name):
        return os.path.join(os.environ["REVIEW15_OUT"], f"{name}-{self.n}")

    def complete(self):  # each ask noted: the process, the task, who asked
        asked = "<".join(frame.name for frame in reversed(traceback.extract_stack()[-5:-1]))
        with open(self.out("complete"), "a") as out:
            out.write(f"{os.getpid()} {self.task_family} {asked}\\n")
        return super().complete()

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")


class DepTask(Counted):
    def output(self):
        return luigi.LocalTarget(self.out("dep"))


class ThereTask(Counted):  # complete before the run: its file made by the test
    def output(self):
        return luigi.LocalTarget(self.out("there"))


class TopTask(Counted):
    def requires(self):
        return [DepTask(n=self.n), ThereTask(n=self.n)]

    def output(self):
        return luigi.LocalTarget(self.out("top"))


class FailsTask(Counted):
    def requires(self):
        return DepTask(n=self.n)

    def output(self):
        return luigi.LocalTarget(self.out("fails"))

    def run(self):
        raise RuntimeError("boom")


class BrokenCompleteTask(Counted):
    def requires(self):
        return ThereTask(n=self.n)

    def output(self):
        return luigi.LocalTarget(self.out("broken"))

    def complete(self):
        super().complete()
        raise RuntimeError("complete() broke")
"""


def asked(out: Path, n: int, pid: int) -> tuple[Counter[str], list[str]]:
    """Each task's ``complete()`` asks for ``n`` by any process but ``pid``, counted by family; every ask, as noted."""
    lines = (out / f"complete-{n}").read_text().splitlines()
    return Counter(line.split()[1] for line in lines if int(line.split()[0]) != pid), lines


@pytest.mark.parametrize(
    ("task", "state", "base"),
    [
        ("TopTask", RunState.DONE, 100),
        ("FailsTask", RunState.FAILED, 200),
        ("BrokenCompleteTask", RunState.FAILED, 300),
    ],
)
def test_a_plain_tasks_complete_is_asked_in_the_attempt_as_often_as_luigi_asks_it(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    task: str,
    state: RunState,
    base: int,
) -> None:
    chain = write_chain("review15/complete_chain", CHAIN)
    for n in range(base, base + 5):
        (tmp_path / f"there-{n}").write_text("there\n")
    under_luigi(chain, served.luigid, task, base)
    expected, luigis = asked(tmp_path, base, os.getpid())
    assert expected[task] == 1, luigis
    runs = list(served_runs(served, "complete_chain", task, range(base + 1, base + 5), state))
    assert any(reused(run) for _, run in runs), [run.worker for _, run in runs]
    for n, run in runs:
        counted, lines = asked(tmp_path, n, os.getpid())
        assert counted == expected, (run.worker, lines, luigis)
        submitted = [line for line in lines if int(line.split()[0]) == os.getpid()]
        assert [line.split()[1] for line in submitted] == [task], lines  # the submission's dedupe, once
