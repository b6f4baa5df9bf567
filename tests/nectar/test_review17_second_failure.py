"""review17: what a run's second failing step is told and does. The run records the first step luigi says failed;
a later step's own ``retry_count`` used up, and a yielding step left unfinished by another step than that first one,
are read as if the first step were theirs (found bringing luigi's ``examples/per_task_retry_policy.py`` in)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.nectar.test_luigi_semantics import RETRIES_CHAIN, lines, run_to_end

WriteChain = Callable[[str, str], Path]

# luigi's RETRIES_CHAIN (FragileStepTask fails its own retry_count, 1, at once; YieldingTask yields it) and
# FirstFailTask, which fails first (the highest priority, so luigi's one worker takes it first) and may be retried
SECOND_FAILURE_CHAIN = (
    RETRIES_CHAIN
    + """

class FirstFailTask(luigi.Task):
    priority = 10
    retry_count = 5
    counter = luigi.Parameter()

    def run(self):
        raise RuntimeError("first fails")


class BothTask(luigi.Task):
    retries = 2
    retry_delay = 0
    counter = luigi.Parameter()

    def requires(self):
        return [FirstFailTask(counter=self.counter), FragileStepTask(counter=self.counter)]

    def run(self):
        pass


class TopTask(luigi.Task):
    counter = luigi.Parameter()

    def requires(self):
        return [FirstFailTask(counter=self.counter), YieldingTask(counter=self.counter)]

    def run(self):
        pass
"""
)


def test_a_later_steps_retry_count_used_up_ends_the_run(
    settings: Settings, write_chain: WriteChain, tmp_path: Path
) -> None:
    """README: "a step that has failed its own `retry_count` times ... ends the run (luigid has disabled it)". Here
    the run's 3 attempts each ran FragileStepTask again (local scheduler), or found it disabled (luigid)."""
    write_chain("examples/second_failure_chain", SECOND_FAILURE_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    counter = tmp_path / "fragile.txt"
    run = run_to_end(settings, nectar, "examples/second_failure_chain", "BothTask", counter=str(counter))
    assert run.state == RunState.FAILED
    assert (run.attempt, lines(counter)) == (1, 1), f"attempts {run.attempt}, its step ran {lines(counter)} times"
    assert run.error is not None and "its retry_count is 1" in run.error, run.error


def test_a_yielding_step_names_the_step_it_yielded(settings: Settings, write_chain: WriteChain, tmp_path: Path) -> None:
    """README: "a step left running (one that yielded a step which failed) says `not finished: <step> failed`".
    YieldingTask yielded FragileStepTask, which failed; the run's failed step is FirstFailTask, which it never
    waited for."""
    write_chain("examples/second_failure_chain", SECOND_FAILURE_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    run = run_to_end(settings, nectar, "examples/second_failure_chain", "TopTask", counter=str(tmp_path / "c.txt"))
    assert (run.state, run.failed_step) == (RunState.FAILED, "FirstFailTask")
    steps = {step.task: step for step in nectar.runs.steps(run.id)}
    assert steps["FragileStepTask"].state == "FAILED"
    assert steps["YieldingTask"].error == "not finished: FragileStepTask failed"
