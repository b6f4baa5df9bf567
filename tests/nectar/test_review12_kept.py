"""review12 (round 58): a chain module kept between runs of one attempt process, changed by a run of one task of the
file, must reach a later run of *another* task of the same file (a class the first run's task neither is nor
requires) as a fresh execution of the file gives it, through a real ``nectar worker`` and luigid: a compare narrowed
to what the run's own task reaches would keep the changed module."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_worker import module_settings, module_worker, write_chain_file
from tests.nectar.test_reuse import output, reused
from tests.nectar.test_spare import KEPT, ended, pid_of

#: two task classes and a helper function of one keepable file: ``ChangerTask``'s run changes ``{change}`` of the
#: others; ``ReaderTask``'s run writes what it reads of them
CHAIN = '''
"""A probe of what a kept module carries from one task's run to another task's."""

import luigi
from nectar import NectarTask


def helper(x=1):
    return x


class ReaderTask(NectarTask):
    """Writes its class's attribute, its parameter's default (as its class holds it: a run's own value is the one
    its submission recorded) and the helper's default."""

    n = luigi.IntParameter()
    m = luigi.IntParameter(default=1)
    limit = 1

    def run(self):
        with self.output().open("w") as out:
            out.write(repr((ReaderTask.limit, ReaderTask.m._default, helper())))


class ChangerTask(NectarTask):
    """Changes what ReaderTask reads, then writes its output."""

    n = luigi.IntParameter()

    def run(self):
        {change}
        with self.output().open("w") as out:
            out.write("changed")
'''

#: what ChangerTask's run changes, by case
CHANGES = {
    "another task class's attribute": "ReaderTask.limit = 2",
    "another task class's parameter's default": "ReaderTask.m._default = 2",
    "a function of the file no task of the run calls": "helper.__defaults__ = (2,)",
}


def runs_until_a_reader_follows_a_changer(nectar: Nectar, chain: str) -> list[Run]:
    """ChangerTask then ReaderTask, one run after the other, until one process ran a ReaderTask after a
    ChangerTask of its own twice (a deadline fails only a worker that never reuses a process)."""
    runs: list[Run] = []

    def enough() -> bool:
        for task in ("ChangerTask", "ReaderTask"):
            submission = nectar.submit("review12", chain, task, {"n": len(runs) + 1})
            assert submission.run is not None
            runs.append(ended(nectar, submission.run.id))
        return max(Counter(map(pid_of, readers_after_changers(runs))).values(), default=0) >= 2

    wait_until(enough, timeout=240, interval=0)
    return runs


def readers_after_changers(runs: list[Run]) -> list[Run]:
    """The ReaderTask runs whose process ran a ChangerTask before them."""
    return [
        run
        for at, run in enumerate(runs)
        if run.task == "ReaderTask" and any(r.task == "ChangerTask" and pid_of(r) == pid_of(run) for r in runs[:at])
    ]


@pytest.fixture(scope="module")
def shared(luigid: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One worker and registry for the cases (each its own chain file, ``k<i>_chain``, and its own runs), as
    review11_kept's ``shared``: a process that ran another case's chain before is one more a kept module must not
    carry into (CONTRIBUTING "(round 70, suiteD)")."""
    folder = tmp_path_factory.mktemp("review12")
    settings = module_settings(folder, scheduler_url=luigid, spare_idle=KEPT, runs_per_process=50)
    with module_worker(settings):
        yield settings


@pytest.mark.parametrize("case", CHANGES)
def test_a_run_of_one_task_that_changes_another_of_its_file_leaves_that_one_fresh(case: str, shared: Settings) -> None:
    chain = f"k{list(CHANGES).index(case)}_chain"
    nectar = closed_at_end(Nectar(shared))
    write_chain_file(shared, f"review12/{chain}", CHAIN.format(change=CHANGES[case]))

    runs = runs_until_a_reader_follows_a_changer(nectar, chain)

    assert [run.state for run in runs] == [RunState.DONE] * len(runs), [run.error for run in runs]
    readers = [(pid_of(run), reused(run), output(nectar, run)) for run in runs if run.task == "ReaderTask"]
    assert all(read == "(1, 1, 1)" for _, _, read in readers), readers
