"""Plain luigi tasks under Datanectar behave as under luigi: DONE when they ran, retried as their ``retry_count``
says, failures named for what they are; each chain is also run by plain ``python -m luigi`` to compare."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import luigi
import pytest

from harness import lifeline_env
from harness.procfs import alive
from nectar import outcomes
from nectar.attempt import execute, process_name
from nectar.config import Settings
from nectar.executor import run_in_foreground
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState
from nectar.service import Nectar, retry_policy
from nectar.steps import MAX_ERROR
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

WriteChain = Callable[[str, str], Path]
StartWorker = Callable[..., subprocess.Popen[bytes]]
TRACEBACK = "Traceback (most recent call last)"

# a printing task without outputs (hello_world's shape)
GREETING_CHAIN = """import luigi


class GreetingTask(luigi.Task):
    def run(self):
        print("hello from a task without outputs")
"""

# tasks with their own targets (wordcount's shape), a complete() and a requires() that raise (top_artists with
# spark), an external task that never appears beside a side effect (execution_summary's shape)
OWN_WAYS_CHAIN = """import multiprocessing

import luigi
import luigi.mock


class CountTask(luigi.Task):
    out = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(self.out)

    def run(self):
        with self.output().open("w") as out:
            out.write("3\\n")


class SparkTask(luigi.Task):
    def complete(self):
        raise FileNotFoundError(2, "No such file or directory", "hadoop")

    def run(self):
        pass


class BrokenTask(luigi.Task):
    def requires(self):
        raise ValueError("no upstream for you")

    def run(self):
        pass


class NeverThereTask(luigi.ExternalTask):
    path = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(self.path)


class SideEffectTask(luigi.Task):
    counter = luigi.Parameter()

    def run(self):
        with open(self.counter, "a") as out:
            out.write("ran\\n")


class InMemoryExternalTask(luigi.ExternalTask):
    def output(self):
        return luigi.mock.MockTarget("never-there")


class InMemoryTask(luigi.WrapperTask):
    def requires(self):
        return InMemoryExternalTask()


class InMemoryWriteTask(luigi.Task):
    pids = luigi.Parameter()

    def output(self):
        return luigi.mock.MockTarget("written")

    def run(self):
        with self.output().open("w") as out:
            out.write("in memory\\n")
        with open(self.pids, "w") as out:  # the process luigi started to keep it: this process's only child
            out.write(" ".join(str(child.pid) for child in multiprocessing.active_children()))


class SummaryTask(luigi.WrapperTask):
    counter = luigi.Parameter()
    path = luigi.Parameter()

    def requires(self):
        return [SideEffectTask(counter=self.counter), NeverThereTask(path=self.path)]
"""

# per-task retry_count (per_task_retry_policy's shape), and a step that yields one that fails (dynamic_requirements)
RETRIES_CHAIN = """import luigi


def count(path):
    with open(path, "a") as out:
        out.write("ran\\n")


class FlakyTask(luigi.Task):
    retry_count = 2
    counter = luigi.Parameter()

    def run(self):
        count(self.counter)
        raise RuntimeError("flaky")


class FragileStepTask(luigi.Task):
    retry_count = 1
    counter = luigi.Parameter()

    def run(self):
        count(self.counter)
        raise RuntimeError("fragile")


class PatientTask(luigi.Task):
    retries = 3
    counter = luigi.Parameter()

    def requires(self):
        return FragileStepTask(counter=self.counter)

    def run(self):
        pass


class YieldingTask(luigi.Task):
    counter = luigi.Parameter()

    def run(self):
        yield FragileStepTask(counter=self.counter)


class OverFlakyTask(luigi.Task):
    retries = 1
    counter = luigi.Parameter()

    def requires(self):
        return FlakyTask(counter=self.counter)

    def run(self):
        pass


class GreedyTask(luigi.Task):
    resources = {"nectar_test_pool": 2}

    def run(self):
        pass


class PoolTask(luigi.Task):
    resources = {"nectar_test_pool": 1}

    def run(self):
        pass
"""


class Counted(luigi.Task):
    retry_count = 5


class CountedButPatient(luigi.Task):
    retry_count = 5
    retries = 1


class CountedByProperty(luigi.Task):
    retries = luigi.IntParameter(default=9)  # a parameter, not a policy: ignored

    @property
    def retry_count(self) -> int:
        return 3


def test_a_luigi_retry_count_is_the_number_of_attempts(settings: Settings, tmp_path: Path) -> None:
    assert retry_policy(Counted, settings) == RetryPolicy(4, settings.retry_delay, settings.retry_backoff)
    assert retry_policy(CountedButPatient(), settings).retries == 1
    assert retry_policy(CountedByProperty(), settings).retries == 2
    config = tmp_path / "luigi.cfg"
    config.write_text("[scheduler]\nretry_count = 7\n")
    assert retry_policy(luigi.Task(), settings.replace(luigi_config=config)).retries == 6
    assert retry_policy(Counted(), settings.replace(luigi_config=config)).retries == 4


def test_luigi_cfg_is_read_again_when_it_changes_even_within_one_mtime(settings: Settings, tmp_path: Path) -> None:
    """Each submission asks the file's stamp (one stat): a rewrite that leaves its mtime as it was still shows."""
    config = tmp_path / "luigi.cfg"
    config.write_text("[scheduler]\nretry_count = 7\n")
    configured = settings.replace(luigi_config=config)
    assert retry_policy(luigi.Task(), configured).retries == 6
    was = config.stat()
    config.write_text("[scheduler]\nretry_count = 12\n")
    os.utime(config, ns=(was.st_atime_ns, was.st_mtime_ns))  # an edit within the clock's tick
    assert retry_policy(luigi.Task(), configured).retries == 11
    config.unlink()
    config.mkdir()  # not a file: luigi's defaults
    assert retry_policy(luigi.Task(), configured).retries == settings.retries


def plain_luigi(chain: Path, task: str, *args: str) -> str:
    """What plain ``python -m luigi --local-scheduler`` prints running ``task`` of the chain file."""
    env = {**os.environ, "PYTHONPATH": str(chain.parent)}
    env.pop("LUIGI_CONFIG_PATH", None)
    env |= lifeline_env()  # dies with this process, even SIGKILLed (harness/lifeline.py)
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, task, "--local-scheduler", *args]
    done = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def run_to_end(settings: Settings, nectar: Nectar, ref: str, task: str, **params: object) -> Run:
    chain_type, chain = ref.split("/")
    submission = nectar.submit(chain_type, chain, task, params)
    assert submission.run is not None, "the task was found done before it ran"
    run_in_foreground(settings, nectar.runs, submission.run.id, process_name())
    return nectar.run(submission.run.id)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def retrying(settings: Settings) -> Settings:
    """Settings whose runs are retried twice: what is not retried shows."""
    return settings.replace(retries=2, retry_delay=0.0)


def test_a_task_without_outputs_is_done_once_it_ran(settings: Settings, write_chain: WriteChain) -> None:
    chain = write_chain("examples/greeting_chain", GREETING_CHAIN)
    assert "1 ran successfully" in plain_luigi(chain, "GreetingTask")
    nectar = closed_at_end(Nectar(settings))
    run = run_to_end(settings, nectar, "examples/greeting_chain", "GreetingTask")
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None)
    status = nectar.status(TargetKey.parse(run.key))
    assert status.job_status == "DONE", status
    assert [step.state for step in status.steps] == ["DONE"]


def test_a_finished_task_with_its_own_output_is_done_when_submitted_again(
    settings: Settings, write_chain: WriteChain, tmp_path: Path
) -> None:
    write_chain("examples/own_ways_chain", OWN_WAYS_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    out = tmp_path / "count.txt"
    run = run_to_end(settings, nectar, "examples/own_ways_chain", "CountTask", out=str(out))
    assert run.state == RunState.DONE and out.read_text() == "3\n"
    again = nectar.submit("examples", "own_ways_chain", "CountTask", {"out": str(out)})
    assert again.done and not again.created
    assert again.status is not None and again.status.job_status == "DONE"
    assert again.status.run is not None and again.status.run.id == run.id


@pytest.mark.parametrize(
    ("task", "told"),
    [
        ("SparkTask", "complete() failed: FileNotFoundError: [Errno 2] No such file or directory: 'hadoop'"),
        ("BrokenTask", "requires() failed: ValueError: no upstream for you"),
    ],
)
def test_a_task_whose_scheduling_raises_fails_once_with_its_traceback(
    retrying: Settings, write_chain: WriteChain, task: str, told: str
) -> None:
    chain = write_chain("examples/own_ways_chain", OWN_WAYS_CHAIN)
    assert "1 failed scheduling" in plain_luigi(chain, task)
    nectar = closed_at_end(Nectar(retrying))
    run = run_to_end(retrying, nectar, "examples/own_ways_chain", task)
    assert (run.state, run.attempt, run.failed_step) == (RunState.FAILED, 1, task)
    assert run.error is not None and run.error.startswith(told), run.error
    assert TRACEBACK in run.error and len(run.error) <= MAX_ERROR


def test_an_external_task_never_present_waits_for_its_target_without_a_retry(
    retrying: Settings, write_chain: WriteChain, tmp_path: Path
) -> None:
    chain = write_chain("examples/own_ways_chain", OWN_WAYS_CHAIN)
    absent, counter = tmp_path / "never-there.txt", tmp_path / "side-effects.txt"
    told = plain_luigi(chain, "SummaryTask", "--counter", str(tmp_path / "plain.txt"), "--path", str(absent))
    assert "1 ran successfully" in told and "were missing external dependencies" in told
    nectar = closed_at_end(Nectar(retrying))
    run = run_to_end(retrying, nectar, "examples/own_ways_chain", "SummaryTask", counter=str(counter), path=str(absent))
    assert (run.state, run.attempt, run.failed_step) == (RunState.WAITING, 0, None)
    assert (run.error, run.waiting_for) == (f"waiting for {absent}", (str(absent),))
    assert lines(counter) == 1, "the upstream side effect ran again"


def test_an_external_task_whose_target_cannot_be_checked_fails_once_saying_why(
    retrying: Settings, write_chain: WriteChain, tmp_path: Path
) -> None:
    write_chain("examples/own_ways_chain", OWN_WAYS_CHAIN)
    before = multiprocessing.active_children()
    run = run_to_end(retrying, closed_at_end(Nectar(retrying)), "examples/own_ways_chain", "InMemoryTask")
    assert (run.state, run.attempt, run.failed_step) == (RunState.FAILED, 1, "InMemoryExternalTask")
    assert run.error == (
        "external data missing: never-there (it cannot be waited for: a MockTarget is neither a local file nor "
        "an S3 object)"
    )
    # luigi keeps a MockTarget's data in a process of its own, which it never stops: the attempt stopped it
    assert multiprocessing.active_children() == before


def test_a_submission_that_asks_a_mock_target_leaves_no_process_behind(
    settings: Settings, write_chain: WriteChain
) -> None:
    write_chain("examples/own_ways_chain", OWN_WAYS_CHAIN)
    before = multiprocessing.active_children()
    submission = closed_at_end(Nectar(settings)).submit(
        "examples", "own_ways_chain", "InMemoryWriteTask", {"pids": "unused"}
    )
    assert submission.run is not None, "an empty MockTarget was found to exist"
    assert multiprocessing.active_children() == before


def test_a_worker_attempt_that_used_a_mock_target_leaves_no_process_behind(
    settings: Settings, luigid: str, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    write_chain("examples/own_ways_chain", OWN_WAYS_CHAIN)
    quick = settings.replace(scheduler_url=luigid)
    nectar, pids = closed_at_end(Nectar(quick)), tmp_path / "pids.txt"
    submission = nectar.submit("examples", "own_ways_chain", "InMemoryWriteTask", {"pids": str(pids)})
    assert submission.run is not None
    run_id = submission.run.id
    start_worker(quick, 1)
    run = wait_until(lambda: (r := nectar.runs.get(run_id)) and not r.state.active and r, timeout=60)
    assert isinstance(run, Run) and run.state == RunState.DONE, run
    [keeper] = [int(pid) for pid in pids.read_text().split()]
    # the attempt's process ends with os._exit: no exit handler of luigi's or multiprocessing's stops it there
    wait_until(lambda: not alive(keeper), timeout=60)


def test_a_tasks_retry_count_is_its_number_of_attempts(
    settings: Settings, write_chain: WriteChain, tmp_path: Path
) -> None:
    write_chain("examples/retries_chain", RETRIES_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    counter = tmp_path / "flaky.txt"
    run = run_to_end(settings, nectar, "examples/retries_chain", "FlakyTask", counter=str(counter))
    assert (run.state, run.attempt, run.max_attempts) == (RunState.FAILED, 2, 2)
    assert lines(counter) == 2


@pytest.mark.parametrize("in_luigi_cfg", [False, True])
def test_a_failed_steps_retry_count_governs_the_run(
    settings: Settings, write_chain: WriteChain, tmp_path: Path, in_luigi_cfg: bool
) -> None:
    """The step's own ``retry_count = 1``; or none of its own and luigi.cfg's ``[scheduler] retry_count = 1``, which
    luigid gives it (before, the run's 4 attempts ran the step 4 times)."""
    chain = RETRIES_CHAIN
    if in_luigi_cfg:
        chain = RETRIES_CHAIN.replace("    retry_count = 1\n", "", 1)  # FragileStepTask's
        config = tmp_path / "luigi.cfg"
        config.write_text("[scheduler]\nretry_count = 1\n")
        settings = settings.replace(luigi_config=config, retry_delay=0.0)
    write_chain("examples/retries_chain", chain)
    nectar = closed_at_end(Nectar(settings))
    counter = tmp_path / "fragile.txt"
    run = run_to_end(settings, nectar, "examples/retries_chain", "PatientTask", counter=str(counter))
    assert (run.state, run.attempt, run.max_attempts, run.failed_step) == (RunState.FAILED, 1, 4, "FragileStepTask")
    assert run.error is not None and "its retry_count is 1" in run.error
    assert lines(counter) == 1


def test_a_failed_run_lists_no_step_running(settings: Settings, write_chain: WriteChain, tmp_path: Path) -> None:
    write_chain("examples/retries_chain", RETRIES_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    run = run_to_end(settings, nectar, "examples/retries_chain", "YieldingTask", counter=str(tmp_path / "c.txt"))
    assert run.state == RunState.FAILED
    steps = {step.task: step for step in nectar.runs.steps(run.id)}
    assert {name: step.state for name, step in steps.items()} == {"YieldingTask": "FAILED", "FragileStepTask": "FAILED"}
    assert steps["YieldingTask"].error == "not finished: FragileStepTask failed"


def test_a_task_luigid_disabled_runs_again_when_submitted_again(
    settings: Settings, write_chain: WriteChain, tmp_path: Path, luigid: str
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    write_chain("examples/retries_chain", RETRIES_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    counter = tmp_path / "flaky.txt"
    first = run_to_end(settings, nectar, "examples/retries_chain", "FlakyTask", counter=str(counter))
    assert first.state == RunState.FAILED and lines(counter) == 2
    assert nectar.scheduler is not None and first.task_id in nectar.scheduler.disabled(first.task_id)
    again = nectar.submit("examples", "retries_chain", "FlakyTask", {"counter": str(counter)})
    assert again.run is not None and again.created
    claimed = nectar.runs.claim(process_name(), run_id=again.run.id)
    assert claimed is not None
    execute(settings, nectar.runs, claimed)
    after = nectar.run(again.run.id)
    assert lines(counter) == 3, f"the re-submitted task did not run: {after.state} {after.error}"
    assert after.error is not None and "RuntimeError: flaky" in after.error


def test_a_run_luigid_does_not_grant_says_why_then_fails_past_the_bound(
    settings: Settings, write_chain: WriteChain, luigid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step whose pool another worker's running task holds waits, saying so, and fails past the bound; one that
    needs more than its pool holds fails at once (no wait grants it: luigid's pools are its luigi.cfg's), as luigi's
    worker is refused at once."""
    settings = settings.replace(scheduler_url=luigid)
    write_chain("examples/retries_chain", RETRIES_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    assert nectar.scheduler is not None
    greedy = nectar.submit("examples", "retries_chain", "GreedyTask", {})
    assert greedy.run is not None
    greedy_id = greedy.run.id
    claimed = wait_until(lambda: nectar.runs.claim(process_name(), run_id=greedy_id))
    execute(settings, nectar.runs, claimed)
    refused = nectar.run(greedy_id)
    assert (refused.state, refused.error) == (
        RunState.FAILED,
        "not granted: more than its pool holds: nectar_test_pool (a step needs 2; the pool holds 1): raise it in "
        "luigi.cfg's [resources] and restart luigid",
    )
    holder = {"task_id": "PlainleftPoolHolder__99914b932b", "worker": "plainleft-holder", "family": "Holder"}
    nectar.scheduler.call("add_task", status="RUNNING", resources={"nectar_test_pool": 1}, **holder)
    try:
        _waits_then_fails_past_the_bound(settings, nectar, monkeypatch)
    finally:
        nectar.scheduler.call("add_task", status="DONE", **holder)


def _waits_then_fails_past_the_bound(settings: Settings, nectar: Nectar, monkeypatch: pytest.MonkeyPatch) -> None:
    submission = nectar.submit("examples", "retries_chain", "PoolTask", {})
    assert submission.run is not None
    why = "waiting: short of resources: nectar_test_pool (a step needs 1; 1 of 1 in use)"

    def attempt_once() -> Run:
        claimed = wait_until(lambda: nectar.runs.claim(process_name(), run_id=run_id))
        assert isinstance(claimed, Run)
        execute(settings, nectar.runs, claimed)
        return nectar.run(run_id)

    run_id = submission.run.id
    waiting = attempt_once()
    assert (waiting.state, waiting.error) == (RunState.PENDING, why)
    assert waiting.waiting_since is not None
    monkeypatch.setattr(outcomes, "WAIT_LIMIT", 0.0)
    failed = attempt_once()
    assert failed.state == RunState.FAILED and failed.error is not None
    assert failed.error.startswith(f"{why}, for "), failed.error


def test_a_step_luigid_disabled_is_re_enabled_for_a_new_task_once_then_fails_the_run_at_once(
    settings: Settings, write_chain: WriteChain, tmp_path: Path, luigid: str
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    write_chain("examples/retries_chain", RETRIES_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    counter = tmp_path / "flaky.txt"
    run_to_end(settings, nectar, "examples/retries_chain", "FlakyTask", counter=str(counter))
    assert lines(counter) == 2  # luigid has disabled FlakyTask
    submission = nectar.submit("examples", "retries_chain", "OverFlakyTask", {"counter": str(counter)})
    assert submission.run is not None
    run_id = submission.run.id

    def attempt_once() -> Run:
        claimed = wait_until(lambda: nectar.runs.claim(process_name(), run_id=run_id))
        assert isinstance(claimed, Run)
        execute(settings, nectar.runs, claimed)
        return nectar.run(run_id)

    waiting = attempt_once()  # luigid did not know OverFlakyTask: FlakyTask is met disabled, and re-enabled
    assert (waiting.state, waiting.attempt) == (RunState.PENDING, 0), waiting
    failed = attempt_once()
    assert (failed.state, failed.failed_step) == (RunState.PENDING, "FlakyTask") and lines(counter) == 3
    failed = attempt_once()  # its second failure: luigid disables it, and its retry_count of 2 ends the run
    assert (failed.state, failed.attempt) == (RunState.FAILED, 2) and lines(counter) == 4
    assert failed.error is not None and "its retry_count is 2" in failed.error


def test_a_retry_meeting_a_step_luigid_disabled_fails_at_once_saying_until_when(
    settings: Settings, write_chain: WriteChain, tmp_path: Path, luigid: str
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    write_chain("examples/retries_chain", RETRIES_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    counter = tmp_path / "flaky.txt"
    run_to_end(settings, nectar, "examples/retries_chain", "FlakyTask", counter=str(counter))
    submission = nectar.submit("examples", "retries_chain", "OverFlakyTask", {"counter": str(counter)})
    assert submission.run is not None
    first = nectar.runs.claim(process_name(), run_id=submission.run.id)
    assert first is not None  # an attempt that failed for another reason: the next one is a retry, not a new ask
    assert nectar.runs.fail(first.id, first.attempt, "OverFlakyTask", "worker lost") == RunState.PENDING
    retry = wait_until(lambda: nectar.runs.claim(process_name(), run_id=first.id))
    assert isinstance(retry, Run) and retry.attempt == 2
    execute(settings, nectar.runs, retry)
    failed = nectar.run(first.id)
    assert (failed.state, failed.failed_step, lines(counter)) == (RunState.FAILED, "FlakyTask", 2), failed
    assert failed.error is not None and failed.error.startswith("disabled by luigid until "), failed.error
