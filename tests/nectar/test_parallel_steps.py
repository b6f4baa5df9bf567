"""Parallel steps: a run's independent steps run at once up to its task's ``workers`` (or NECTAR_TASK_WORKERS),
each in a process of its own, recorded, failed and cancelled as one run; executed by real ``nectar worker``s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import luigi
import pytest

from harness import freeze
from nectar.config import Settings
from nectar.keys import STDOUT_FILE, TargetKey
from nectar.leases import holder, reclaim
from nectar.parallel import InvalidWorkers, step_workers
from nectar.registry import RunState
from nectar.service import Nectar, Submission
from nectar.spares import AHEAD
from tests.conftest import REPO
from tests.faults.conftest import alive, descendants, waitfor
from tests.helpers.ledger import whole_lines
from tests.helpers.registries import closed_at_end, known
from tests.nectar.test_executor import finished

StartWorker = Callable[..., subprocess.Popen[bytes]]
WriteChain = Callable[[str, str], Path]

#: a wrapper over independent steps, each of which notes its start, then waits for its gate to open
GATED_CHAIN = """
import os
import time
from pathlib import Path

import luigi

from nectar import NectarTask

GATES = Path({gates!r})


def note(*words):
    with open(GATES / "ledger.txt", "a") as ledger:
        ledger.write(" ".join(str(w) for w in words) + "\\n")


class GatedTask(NectarTask):
    i = luigi.IntParameter()
    tag = luigi.Parameter(default="")

    def run(self):
        note("start", self.i)
        # the pid file, whole (written aside, then renamed), is the sign the step has started and noted it
        pid_file = GATES / f"pid-{{self.tag}}-{{self.i}}"
        pid_file.with_suffix(".part").write_text(str(os.getpid()))
        os.replace(pid_file.with_suffix(".part"), pid_file)
        print(f"step {{self.i}} started")
        while not (GATES / f"open-{{self.tag}}-{{self.i}}").exists():
            time.sleep(0.01)
        if (GATES / f"die-{{self.tag}}-{{self.i}}").exists():
            os.kill(os.getpid(), 9)
        if (GATES / f"fail-{{self.tag}}-{{self.i}}").exists():
            raise RuntimeError(f"step {{self.i}} gave up")
        note("end", self.i)
        with self.output().open("w") as out:
            out.write(f"{{self.i}}\\n")


class FanTask(NectarTask):
    n = luigi.IntParameter(default=2)
    tag = luigi.Parameter(default="")
    workers = 2

    def requires(self):
        return [GatedTask(i=i, tag=self.tag) for i in range(self.n)]

    def run(self):
        with self.output().open("w") as out:
            out.write("fan\\n")


class SerialFanTask(FanTask):
    workers = None  # the service's NECTAR_TASK_WORKERS
"""


class Gates:
    """The gate files of one run's steps, in the chain's folder of gates."""

    def __init__(self, folder: Path, tag: str) -> None:
        self.folder, self.tag = folder, tag

    def started(self, i: int) -> bool:
        return (self.folder / f"pid-{self.tag}-{i}").exists()

    def pid(self, i: int) -> int:
        return int((self.folder / f"pid-{self.tag}-{i}").read_text())

    def open(self, i: int) -> None:
        (self.folder / f"open-{self.tag}-{i}").touch()

    def fail(self, i: int) -> None:
        (self.folder / f"fail-{self.tag}-{i}").touch()

    def ledger(self) -> list[str]:
        return whole_lines(self.folder / "ledger.txt")


@pytest.fixture
def gates(tmp_path: Path, write_chain: WriteChain) -> Path:
    folder = tmp_path / "gates"
    folder.mkdir()
    write_chain("par/fan_chain", GATED_CHAIN.format(gates=str(folder)))
    return folder


def submit(nectar: Nectar, task: str, tag: str, n: int = 2) -> Submission:
    submission = nectar.submit("par", "fan_chain", task, {"n": n, "tag": tag})
    assert submission.created and submission.run is not None
    return submission


def running_steps(nectar: Nectar, submission: Submission) -> list[str]:
    assert submission.run is not None
    return sorted(s.task_id for s in nectar.runs.steps(submission.run.id) if s.state == "RUNNING")


@pytest.mark.parametrize(
    ("task", "task_workers"), [("FanTask", 1), ("SerialFanTask", 2)], ids=["class-attribute", "setting"]
)
def test_independent_steps_run_at_once_up_to_the_workers_asked(
    settings: Settings, luigid: str, gates: Path, start_worker: StartWorker, task: str, task_workers: int
) -> None:
    settings = settings.replace(scheduler_url=luigid, task_workers=task_workers)
    nectar = closed_at_end(Nectar(settings))
    tag = f"{task}-{task_workers}"
    run_gates = Gates(gates, tag)
    submission = submit(nectar, task, tag)
    start_worker(settings, workers=1)

    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start before any gate opens")
    assert sorted(run_gates.ledger()) == ["start 0", "start 1"]
    waitfor(lambda: len(running_steps(nectar, submission)) == 2, 60, "both steps RUNNING at once in the registry")
    assert run_gates.pid(0) != run_gates.pid(1)  # each in a process of its own
    run_gates.open(0)
    run_gates.open(1)
    status = finished(nectar, submission.key)

    assert status.job_status == "DONE", status
    assert {(s.task, s.state, s.executed) for s in status.steps} == {
        ("GatedTask", "DONE", True),
        (task, "DONE", True),
    }
    assert len(status.steps) == 3
    for step in status.steps:  # each forked step's output was captured in its own process
        if step.task == "GatedTask":
            assert step.key is not None
            i = int(nectar.store.read_text(TargetKey.parse(step.key)))
            assert nectar.store.read_text(TargetKey.parse(step.key).with_file(STDOUT_FILE)) == f"step {i} started\n"


def test_parallel_steps_record_their_states_in_a_postgresql_registry_each_over_its_own_connection(
    settings: Settings, database_url: str, gates: Path, start_worker: StartWorker
) -> None:
    settings = settings.replace(database_url=database_url)
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "pg")
    submission = submit(nectar, "FanTask", "pg", n=3)
    start_worker(settings, workers=1)
    # luigid picks which two of the three steps go first: any two, both held at their gates
    waitfor(lambda: sum(run_gates.started(i) for i in range(3)) == 2, 60, "two of the three steps to start")
    waitfor(lambda: len(running_steps(nectar, submission)) == 2, 60, "both steps RUNNING at once in the registry")

    for i in range(3):
        run_gates.open(i)
    status = finished(nectar, submission.key)

    assert status.job_status == "DONE", status
    assert sorted((s.task, s.state, s.executed) for s in status.steps) == [
        ("FanTask", "DONE", True),
        *[("GatedTask", "DONE", True)] * 3,
    ]


def test_by_default_a_runs_steps_run_one_at_a_time(settings: Settings, gates: Path, start_worker: StartWorker) -> None:
    nectar = closed_at_end(Nectar(settings))  # luigi's local scheduler: NECTAR_TASK_WORKERS is 1
    run_gates = Gates(gates, "serial")
    submission = submit(nectar, "SerialFanTask", "serial")
    start_worker(settings, workers=1)

    for _ in range(2):  # open each step's gate once it has started: the other starts only after it ended
        (first,) = waitfor(
            lambda: next(((i,) for i in (0, 1) if run_gates.started(i) and not _opened(gates, i)), None),
            60,
            "a step to start",
        )
        run_gates.open(first)
    status = finished(nectar, submission.key)

    assert status.job_status == "DONE", status
    ledger = run_gates.ledger()
    assert [line.split()[0] for line in ledger] == ["start", "end", "start", "end"], ledger
    assert ledger[0].split()[1] == ledger[1].split()[1]


def _opened(gates: Path, i: int) -> bool:
    return (gates / f"open-serial-{i}").exists()


def test_a_parallel_step_committing_late_renews_the_lease_in_its_attempts_name(
    settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    """A step's commit after a heartbeat interval renews the lease: the run's worker stays the attempt's process
    (a step's own, once it ended, would be a dead worker whose run is reclaimed)."""
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "late")
    submission = submit(nectar, "FanTask", "late")
    assert submission.run is not None
    run_id = submission.run.id
    start_worker(settings, workers=1)
    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start")
    beats: set[float | None] = set()

    def beaten_twice() -> bool:  # a heartbeat interval has passed since the steps were forked
        run = nectar.runs.get(run_id)
        beats.add(run.heartbeat_at if run else None)
        return len(beats) >= 3

    waitfor(beaten_twice, 60, "two heartbeats of the attempt", interval=0.01)
    attempt = nectar.runs.get(run_id)
    assert attempt is not None and attempt.worker is not None
    run_gates.open(0)
    run_gates.open(1)
    workers = set()

    def ended() -> bool:
        run = nectar.runs.get(run_id)
        assert run is not None
        workers.add(run.worker)
        return not run.state.active

    waitfor(ended, 60, "the run to end", interval=0.002)

    assert workers == {attempt.worker}
    done = nectar.runs.get(run_id)
    assert done is not None and done.state == RunState.DONE, done


def test_a_parallel_step_of_an_attempt_that_lost_its_run_writes_no_step_into_its_successors_run(
    settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    """A step forked from an attempt tells its steps in that attempt's name: once the attempt's run is another
    attempt's (its process frozen, so that it cannot stop its steps first), what the step says on ending (its
    commit refused: a failure) is not written over its successor's steps."""
    nectar = closed_at_end(Nectar(settings.replace(retries=1, retry_delay=0.0)))
    run_gates = Gates(gates, "frozen")
    submission = submit(nectar, "FanTask", "frozen")
    assert submission.run is not None
    run_id = submission.run.id
    worker = start_worker(settings, workers=1)
    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start")
    first = nectar.runs.get(run_id)
    assert first is not None and first.worker is not None
    _, attempt_pid = holder(first.worker)
    assert attempt_pid is not None and attempt_pid in descendants(worker.pid)
    frozen = [worker.pid, attempt_pid]  # the worker first: it must not see its attempt fall silent
    for pid in frozen:
        freeze(pid)
    try:
        assert nectar.runs.fail(run_id, 1, "GatedTask", "worker lost (frozen)") == RunState.PENDING
        second = nectar.runs.claim("elsewhere:1", run_id)
        assert second is not None and second.attempt == 2
        before = [(s.task_id, s.state, s.updated_at) for s in nectar.runs.steps(run_id)]
        step = run_gates.pid(0)

        run_gates.open(0)  # the step ends: its commit is refused, and its failure is its lost attempt's news
        waitfor(lambda: not alive(step), 60, "the step's process to end")

        assert [(s.task_id, s.state, s.updated_at) for s in nectar.runs.steps(run_id)] == before
        assert (gates / "ledger.txt").read_text().count("end 0") == 1  # it did reach its commit
    finally:
        for pid in reversed(frozen):
            os.kill(pid, signal.SIGCONT)


def test_a_parallel_step_refused_in_its_attempts_name_stops_the_attempt_before_its_next_heartbeat(
    settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    """An attempt whose lease ran out while it was silent (its heartbeat far off: frozen, for the lease) is reclaimed
    and its run claimed again; a step of it that ends then is refused its write in the attempt's name, and the attempt
    stops at once, as a refusal of its own stops it: it does not wait for its other step (held at its gate for good)
    or start the third until its heartbeat, which is ten minutes away."""
    settings = settings.replace(retries=1, retry_delay=0.0, heartbeat_interval=600.0, lease_timeout=1200.0)
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "refused")
    submission = submit(nectar, "FanTask", "refused", n=3)  # two steps at once: the third waits for a place
    assert submission.run is not None
    run_id = submission.run.id
    worker = start_worker(settings, workers=1)
    waitfor(lambda: sum(map(run_gates.started, range(3))) == 2, 60, "two steps to start")
    ending, held = [i for i in range(3) if run_gates.started(i)]
    first = nectar.runs.get(run_id)
    assert first is not None and first.worker is not None
    _, attempt_pid = holder(first.worker)
    assert attempt_pid is not None and attempt_pid in descendants(worker.pid)
    held_pid = run_gates.pid(held)

    [lost] = reclaim(nectar.runs, 0.0, None)  # the worker's reclaim, its lease taken as run out
    assert (lost.id, lost.attempt) == (run_id, 1)
    second = nectar.runs.claim("elsewhere:1", run_id)
    assert second is not None and second.attempt == 2

    run_gates.open(ending)  # the step ends: its commit and its failure are refused in the attempt's name

    waitfor(lambda: not alive(attempt_pid), 60, "the attempt to stop (not at its heartbeat, ten minutes away)")
    waitfor(lambda: not alive(held_pid), 60, "the step held at its gate to be stopped with its attempt")
    third = next(i for i in range(3) if i not in (ending, held))
    assert not run_gates.started(third) or not alive(run_gates.pid(third))
    assert f"end {held}" not in run_gates.ledger()
    current = nectar.runs.get(run_id)
    assert current is not None and (current.attempt, current.worker) == (2, "elsewhere:1")


def test_a_failing_parallel_step_fails_the_run_naming_it_and_the_other_step_finishes(
    settings: Settings, luigid: str, gates: Path, start_worker: StartWorker
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "failing")
    submission = submit(nectar, "FanTask", "failing")
    start_worker(settings, workers=1)
    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start")

    run_gates.fail(1)
    run_gates.open(1)
    run_gates.open(0)
    status = finished(nectar, submission.key)

    assert status.job_status == "FAILED"
    assert (status.failed_step, status.error) == ("GatedTask", "RuntimeError: step 1 gave up")
    states = sorted((s.task, s.state, s.error) for s in status.steps)
    assert states == [
        ("FanTask", "PENDING", None),
        ("GatedTask", "DONE", None),
        ("GatedTask", "FAILED", "RuntimeError: step 1 gave up"),
    ]
    assert status.run is not None and status.run.attempt == 1  # retries=0: one attempt, no more


def test_a_parallel_step_whose_process_dies_fails_the_run_naming_it(
    settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "died")
    submission = submit(nectar, "FanTask", "died")
    start_worker(settings, workers=1)
    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start")

    (gates / "die-died-1").touch()
    run_gates.open(1)
    run_gates.open(0)
    status = finished(nectar, submission.key)

    assert status.job_status == "FAILED"
    assert status.failed_step == "GatedTask"
    assert status.error is not None and "died unexpectedly with exit code -9" in status.error
    assert sorted((s.task, s.state) for s in status.steps) == [
        ("FanTask", "PENDING"),
        ("GatedTask", "DONE"),
        ("GatedTask", "FAILED"),
    ]


def test_cancelling_a_run_with_parallel_steps_leaves_no_process_behind(
    settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "cancelled")
    submission = submit(nectar, "FanTask", "cancelled")
    worker = start_worker(settings, workers=1)
    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start")
    steps = [run_gates.pid(0), run_gates.pid(1)]
    run_id = known(submission.run).id
    attempt = waitfor(lambda: known(nectar.runs.get(run_id)).worker, 60, "the attempt's process")
    attempt_pid = holder(attempt)[1]
    assert attempt_pid is not None
    assert set(steps) <= set(descendants(attempt_pid))

    nectar.cancel(run_id)

    waitfor(lambda: not any(alive(pid) for pid in [*steps, attempt_pid]), 60, "the attempt and its steps to end")
    run = nectar.runs.get(run_id)
    assert run is not None and run.state == RunState.CANCELLED
    assert {s.state for s in nectar.runs.steps(run.id)} <= {"CANCELLED", "DONE"}
    assert worker.poll() is None  # the worker goes on, with its spares at most (AHEAD per slot while busy)
    assert len([pid for pid in descendants(worker.pid) if alive(pid)]) <= AHEAD
    assert not run_gates.ledger() or all(line.startswith("start") for line in run_gates.ledger())


def test_a_task_asking_for_no_workers_fails_its_run_at_once_naming_why(
    settings: Settings, gates: Path, write_chain: WriteChain, start_worker: StartWorker
) -> None:
    source = (gates.parent / "chains" / "par" / "fan_chain.py").read_text()
    write_chain("par/fan_chain", source + "\n\nclass NoWorkersTask(FanTask):\n    workers = 0\n")
    nectar = closed_at_end(Nectar(settings.replace(retries=2)))
    submission = nectar.submit("par", "fan_chain", "NoWorkersTask", {"tag": "none"})
    start_worker(settings, workers=1)

    status = finished(nectar, submission.key)

    assert status.job_status == "FAILED"
    assert status.failed_step == "NoWorkersTask"
    assert status.error == "InvalidWorkers: NoWorkersTask.workers must be a whole number ≥ 1, not 0"
    assert status.run is not None and status.run.attempt == 1  # not retried: the class must change first
    assert not Gates(gates, "none").ledger()


def test_a_stopped_worker_interrupts_parallel_steps_and_requeues_their_run(
    settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    settings = settings.replace(drain_grace=0.5)
    nectar = closed_at_end(Nectar(settings))
    run_gates = Gates(gates, "stopped")
    submission = submit(nectar, "FanTask", "stopped")
    worker = start_worker(settings, workers=1)
    waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "both steps to start")
    steps = [run_gates.pid(0), run_gates.pid(1)]

    worker.terminate()

    assert worker.wait(timeout=120) == 0
    assert not any(alive(pid) for pid in steps)
    assert submission.run is not None
    run = nectar.runs.get(submission.run.id)
    assert run is not None and (run.state, run.attempt) == (RunState.PENDING, 0)  # requeued, uncounted
    assert {s.state for s in nectar.runs.steps(run.id) if s.task == "GatedTask"} == {"FAILED"}
    assert not any(nectar.store.exists(TargetKey.parse(s.key)) for s in nectar.runs.steps(run.id) if s.key)


class _Asks(luigi.Task):
    workers: object = None


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_a_workers_attribute_that_is_no_whole_number_above_zero_is_refused(value: object) -> None:
    task = type("OddTask", (_Asks,), {"workers": value})()
    with pytest.raises(InvalidWorkers, match=rf"OddTask.workers must be a whole number ≥ 1, not {value!r}"):
        step_workers(task, 1)
    assert step_workers(_Asks(), 3) == 3


def test_plain_luigi_with_workers_2_runs_the_same_steps_at_once(tmp_path: Path, gates: Path, chains_dir: Path) -> None:
    """The comparison: ``python -m luigi --workers 2`` with the same file starts both steps before either gate opens."""
    run_gates = Gates(gates, "luigi")
    argv = [sys.executable, "-m", "luigi", "--module", "fan_chain", "SerialFanTask", "--tag", "luigi"]
    env = {**os.environ, "PYTHONPATH": f"{chains_dir / 'par'}{os.pathsep}{REPO}"}
    env |= {"NECTAR_DATA_DIR": str(tmp_path / "data"), "NECTAR_LOCAL_TARGETS": str(tmp_path / "luigi-targets")}
    log = open(tmp_path / "luigi.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*argv, "--workers", "2", "--local-scheduler"], env=env, cwd=tmp_path, stderr=log)
    try:
        waitfor(lambda: run_gates.started(0) and run_gates.started(1), 60, "luigi to start both steps")
        run_gates.open(0)
        run_gates.open(1)
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert "3 ran successfully" in (tmp_path / "luigi.log").read_text()


def test_parallel_steps_on_s3_each_talk_to_the_store_over_their_own_connections(
    s3_settings: Settings, gates: Path, start_worker: StartWorker
) -> None:
    """The attempt has talked to S3 (its steps' complete()) before it forks them: no step may use its connections."""
    nectar = closed_at_end(Nectar(s3_settings.replace(task_workers=4)))
    run_gates = Gates(gates, "s3")
    for i in range(8):
        run_gates.open(i)
    submission = submit(nectar, "SerialFanTask", "s3", n=8)
    start_worker(s3_settings.replace(task_workers=4), workers=1)

    status = finished(nectar, submission.key)

    assert status.job_status == "DONE", status
    assert len(status.steps) == 9 and all(s.state == "DONE" and s.executed for s in status.steps)
    for step in status.steps:
        if step.task == "GatedTask":
            assert step.key is not None
            key = TargetKey.parse(step.key)
            i = int(nectar.store.read_text(key))
            assert nectar.store.read_text(key.with_file(STDOUT_FILE)) == f"step {i} started\n"


def test_the_setting_takes_a_whole_number_of_at_least_one() -> None:
    assert Settings.from_env({}).task_workers == 1
    assert Settings.from_env({"NECTAR_TASK_WORKERS": "4"}).task_workers == 4
    with pytest.raises(ValueError, match="NECTAR_TASK_WORKERS must be a whole number from 1 to 65536, not '0'"):
        Settings.from_env({"NECTAR_TASK_WORKERS": "0"})
