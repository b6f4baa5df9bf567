"""A spare executes ahead the chain file of the run its worker claimed last, and its attempt takes that module when
its run is of that chain and the file has not changed since (:mod:`nectar.executor`, :func:`nectar.catalog.loader.
fresh_chain_module`): the chain's import is off the path from claim to ``run()``, and a run still runs the file as
it is on disk when its attempt begins."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nectar import executor as executor_module
from nectar.config import Settings
from nectar.executor import AHEAD, NOT_AHEAD, Executor
from nectar.registry import Run, RunState
from nectar.service import Nectar
from nectar.spares import Spare
from tests.conftest import wait_until
from tests.helpers.ledger import whole_lines
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import pid_of

#: a chain that notes each execution of its file (which process, when, which version) and each run
CHAIN = """
import os
import time

import luigi
from nectar import NectarTask

VERSION = {version}
while not os.path.exists({gate!r}):  # the test holds the file's execution here while it removes the gate
    time.sleep(0.01)
with open({ledger!r}, "a") as ledger:
    ledger.write(f"import {{os.getpid()}} {{time.time()}} {{VERSION}}\\n")


class AheadTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{{VERSION}}\\n")
"""


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    gate = tmp_path / "gate"
    gate.touch()
    return gate


@pytest.fixture
def chain(write_chain: Callable[[str, str], Path], ledger: Path, gate: Path) -> Callable[[int], Path]:
    def write(version: int) -> Path:
        return write_chain("ahead/ahead_chain", CHAIN.format(version=version, gate=str(gate), ledger=str(ledger)))

    write(1)
    return write


@pytest.fixture
def executor(settings: Settings, chain: Callable[[int], Path]) -> Iterator[Executor]:
    """A worker's executor of one slot in this process (its spares are forks of it, a process per run: a reused one
    is test_reuse's), on luigi's local scheduler."""
    made = closed_at_end(
        Executor(settings.replace(scheduler_url=None, spare_idle=3600.0, runs_per_process=1), concurrency=1)
    )
    yield made
    made.spares.close()
    for pid in list(made.children):
        made._kill(pid, signal.SIGKILL)
    made._reap(block=True)


def run_through(executor: Executor, nectar: Nectar, n: int) -> Run:
    """Submit AheadTask(n) and serve until its run ends."""
    submission = nectar.submit("ahead", "ahead_chain", "AheadTask", {"n": n})
    assert submission.run is not None
    run_id = submission.run.id

    def ended() -> Run | None:
        executor._serve_once()
        run = nectar.runs.get(run_id)
        return run if run is not None and not run.state.active else None

    run = wait_until(ended, timeout=120)
    assert isinstance(run, Run)
    return run


def ready_spare(executor: Executor) -> Spare:
    """Serve until a spare is set up; the oldest ready one."""

    def ready() -> Spare | None:
        executor._serve_once()
        return executor.spares.ready()

    spare = wait_until(ready, timeout=120)
    assert isinstance(spare, Spare)
    return spare


def ahead_spare(executor: Executor) -> Spare:
    """Serve until the oldest ready spare is one that executed the worker's likely chain ahead. One forked before the
    worker knew that chain (under load, a second spare is forked before the first claim) said it is ready without it:
    it is let go, so that the next claim takes one that did (if no spare ever does, this waits out its timeout)."""

    def ready() -> Spare | None:
        executor._serve_once()
        spare = executor.spares.ready()
        if spare is not None and spare.said != AHEAD:
            executor.spares._drop(spare)
            return None
        return spare

    spare = wait_until(ready, timeout=120)
    assert isinstance(spare, Spare)
    return spare


def executions(ledger: Path, pid: int) -> list[tuple[float, int]]:
    """When and which version of the chain file process ``pid`` executed."""
    lines = [line.split() for line in whole_lines(ledger)]
    return [(float(at), int(version)) for _, who, at, version in lines if int(who) == pid]


def output(settings: Settings, run: Run) -> str:
    return (settings.local_targets_dir / run.key).read_text()


def test_the_attempt_takes_the_chain_its_spare_executed_before_the_run_was_claimed(
    executor: Executor, settings: Settings, ledger: Path
) -> None:
    nectar = closed_at_end(Nectar(settings))
    assert run_through(executor, nectar, 1).state == RunState.DONE  # its worker now knows the likely chain
    assert ahead_spare(executor).said == AHEAD

    run = run_through(executor, nectar, 2)

    assert run.state == RunState.DONE and run.started_at is not None
    (executed,) = executions(ledger, pid_of(run))  # once in its process, before its run was claimed
    assert executed[0] < run.started_at


def test_a_chain_file_changed_after_its_spare_executed_it_runs_as_it_is_now(
    executor: Executor, settings: Settings, ledger: Path, chain: Callable[[int], Path]
) -> None:
    nectar = closed_at_end(Nectar(settings))
    run_through(executor, nectar, 1)
    assert ahead_spare(executor).said == AHEAD
    chain(2)

    run = run_through(executor, nectar, 2)

    assert run.state == RunState.DONE
    assert [version for _, version in executions(ledger, pid_of(run))] == [1, 2]
    assert output(settings, run) == "2\n"


def test_a_chain_file_that_takes_too_long_to_execute_ahead_is_left_to_its_attempts(
    executor: Executor, settings: Settings, ledger: Path, gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its spare gives up (at the budget: here the file waits for the test's gate), says so, and is ready with
    nothing executed ahead; its attempt executes the file, and no spare tries that file again."""
    monkeypatch.setattr(executor_module, "AHEAD_BUDGET", 0.2)  # read by the spares forked from now on
    nectar = closed_at_end(Nectar(settings))
    run_through(executor, nectar, 1)
    executor.spares.close()  # forked while the gate was open: let them go
    gate.unlink()
    spare = ready_spare(executor)
    assert spare.said == NOT_AHEAD
    assert executions(ledger, spare.pid) == []
    for other in [each for each in executor.spares.spares if each is not spare]:
        # one forked before it and ready only now (under load) would be the oldest ready one, and take the run
        executor.spares._drop(other)
    gate.touch()

    run = run_through(executor, nectar, 2)

    assert run.state == RunState.DONE and pid_of(run) == spare.pid
    assert len(executions(ledger, spare.pid)) == 1  # by its attempt
    assert executor._not_ahead

    def forked_since() -> Spare | None:  # a spare forked after the run was claimed: the file is not tried again
        executor._serve_once()
        return next(
            (s for s in executor.spares.spares if s.ready and s.tag is not None and s.tag.params == (("n", "2"),)), None
        )

    later = wait_until(forked_since, timeout=120)
    assert isinstance(later, Spare) and later.said not in (AHEAD, NOT_AHEAD)
    assert executions(ledger, later.pid) == []
