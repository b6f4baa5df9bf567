"""An attempt process that ended its run cleanly takes another (up to ``NECTAR_RUNS_PER_PROCESS``), through the real
worker: what one run leaves never reaches the next, and a process killed between runs or during one loses no run
(:mod:`nectar.reuse`, :mod:`nectar.spares`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from harness import lifeline_env
from harness.processes import base_env
from nectar.build import luigi_worker_id
from nectar.config import Settings
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.luigid import SchedulerClient
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import free_port, start_luigid, stop, wait_until
from tests.faults.conftest import alive, children
from tests.helpers.registries import closed_at_end, known
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]
#: the repository's root (where a process of a test imports ``tests`` from)
REPOSITORY = Path(__file__).resolve().parents[2]
CHAIN = """
import logging
import os
import subprocess
import threading
import time

import luigi
from nectar import NectarTask

VERSION = {version!r}
#: a module global each run appends to: a run that finds it not empty inherited an earlier run's module
SEEN = []


class CountTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        SEEN.append(self.n)
        print(f"printed by run {{self.n}}")
        logging.getLogger("counting").warning("logged by run %d", self.n)
        with self.output().open("w") as out:
            out.write(f"{{VERSION}} {{SEEN}}\\n")


class LeavesTask(NectarTask):
    n = luigi.IntParameter()
    leaves = luigi.Parameter()

    def run(self):
        left = 0
        if self.leaves == "thread":
            threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()
        else:
            left = subprocess.Popen(["sleep", "3600"]).pid
        with self.output().open("w") as out:
            out.write(f"{{left}}\\n")


class HeldTask(NectarTask):
    n = luigi.IntParameter()
    gate = luigi.Parameter()

    def run(self):
        # its pid in <gate>.started, whole (written aside, then renamed): the test reads it as soon as it exists
        with open(self.gate + ".starting", "w") as started:
            started.write(str(os.getpid()))
        os.replace(self.gate + ".starting", self.gate + ".started")
        while not os.path.exists(self.gate):
            time.sleep(0.05)
        with self.output().open("w") as out:
            out.write("held\\n")
"""


@pytest.fixture
def reusing(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    write_chain("reuse/reuse_chain", CHAIN.format(version="v1"))
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=1, retry_delay=0)


def reused(run: Run) -> bool:
    """Whether ``run``'s attempt ran in a process that had executed a run before (``host:pid.n``, n > 1)."""
    return bool(re.fullmatch(r".*:\d+\.\d+", run.worker or ""))


def submit(nectar: Nectar, task: str, **params: object) -> str:
    submission = nectar.submit("reuse", "reuse_chain", task, params)
    assert submission.run is not None
    return submission.run.id


def count(nectar: Nectar, n: int) -> Run:
    return ended(nectar, submit(nectar, "CountTask", n=n))


def output(nectar: Nectar, run: Run, file: str | None = None) -> str:
    key = TargetKey.parse(run.key)
    return nectar.store.read_text(key if file is None else key.with_file(file))


def until_reused(nectar: Nectar, first: int) -> list[Run]:
    """CountTask runs one after the other from ``first``, until one runs in a process that ran one before: how many
    that takes depends on which spare is ready first when each is claimed (a returned process or a fresh one), so
    it is not counted; a deadline only fails a worker that never reuses one."""
    runs = [count(nectar, first)]

    def next_reused() -> bool:
        if not reused(runs[-1]):
            runs.append(count(nectar, first + len(runs)))
        return reused(runs[-1])

    try:
        wait_until(next_reused, timeout=120, interval=0)
    except AssertionError:
        raise AssertionError(f"no run reused a process: {[run.worker for run in runs]}") from None
    return runs


def test_a_process_that_ended_its_run_takes_another_and_each_run_has_its_own_module_and_logs(
    reusing: Settings, start_worker: StartWorker, write_chain: Callable[[str, str], Path]
) -> None:
    nectar = closed_at_end(Nectar(reusing))
    worker = start_worker(reusing, workers=1)

    runs = until_reused(nectar, 1)
    write_chain("reuse/reuse_chain", CHAIN.format(version="v2"))  # each process executed v1 ahead of its next run
    later = [count(nectar, 100 + i) for i in range(4)]

    assert all(run.state == RunState.DONE and run.attempt == 1 for run in runs + later)
    assert pid_of(runs[-1]) in {pid_of(run) for run in runs[:-1]}  # the same process, its next run
    answer = requests.get(f"{reusing.scheduler_url}/api/worker_list", timeout=60).json()["response"]
    in_luigid = {worker["name"] for worker in answer}
    assert {luigi_worker_id(run.worker or "") for run in runs} <= in_luigid  # a luigi worker of its own per run
    assert sum(reused(run) for run in later) >= 2, [run.worker for run in runs + later]  # fresh ones join in turn
    assert alive(pid_of(later[-1])) and pid_of(later[-1]) in children(worker.pid)  # a spare again
    for run in runs + later:  # a chain's module globals never reach the next run; the file as it is on disk now
        n = int(run.params["n"])
        assert output(nectar, run) == f"{'v1' if run in runs else 'v2'} [{n}]\n", run.worker
        assert re.findall(r"printed by run \d+", output(nectar, run, STDOUT_FILE)) == [f"printed by run {n}"]
        assert re.findall(r"logged by run \d+", output(nectar, run, STDERR_FILE)) == [f"logged by run {n}"]

    worker.send_signal(signal.SIGTERM)  # its spares, those that came back from a run too, go with it
    worker.wait(timeout=60)
    wait_until(lambda: not any(alive(pid_of(run)) for run in runs + later), timeout=60)


def test_a_reused_process_runs_its_next_run_past_a_restart_of_luigid_that_closed_its_connection(
    reusing: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A process keeps its connections to luigid from one run to the next; luigid restarted between two of its runs
    (closing them), its next run is DONE at its first attempt all the same, its step DONE in the new luigid."""
    port = free_port()
    settings = reusing.replace(scheduler_url=f"http://127.0.0.1:{port}")
    luigid = start_luigid(port, tmp_path / "luigid")
    try:
        nectar = closed_at_end(Nectar(settings))
        start_worker(settings, workers=1)
        before = until_reused(nectar, 1)
        stop(luigid)
        luigid = start_luigid(port, tmp_path / "luigid-again")
        after = [count(nectar, 100)]
        while pid_of(after[-1]) not in {pid_of(run) for run in before}:  # a process that ran one before the restart
            assert len(after) < 10, [run.worker for run in before + after]
            after.append(count(nectar, 100 + len(after)))
        assert [(run.state, run.attempt) for run in before + after] == [(RunState.DONE, 1)] * len(before + after)
        client = SchedulerClient(settings.scheduler_url or "")
        assert all(known(client.task(run.task_id))["status"] == "DONE" for run in after)
    finally:
        stop(luigid)


def test_with_one_run_per_process_each_run_has_a_fresh_process(reusing: Settings, start_worker: StartWorker) -> None:
    settings = reusing.replace(runs_per_process=1)
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=1)

    runs = [count(nectar, n) for n in range(1, 6)]

    assert [run.state for run in runs] == [RunState.DONE] * 5
    assert len({pid_of(run) for run in runs}) == 5 and not any(reused(run) for run in runs)
    wait_until(lambda: not any(alive(pid_of(run)) for run in runs), timeout=60)


@pytest.mark.parametrize("leaves", ["thread", "child process"])
def test_a_process_whose_run_left_a_thread_or_a_child_process_exits(
    reusing: Settings, start_worker: StartWorker, leaves: str, tmp_path: Path
) -> None:
    nectar = closed_at_end(Nectar(reusing))
    start_worker(reusing, workers=1)

    run = ended(nectar, submit(nectar, "LeavesTask", n=1, leaves=leaves.split()[-1]))

    left = int(output(nectar, run))
    try:
        assert run.state == RunState.DONE
        wait_until(lambda: not alive(pid_of(run)), timeout=60)
        said = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
        assert f"attempt process {pid_of(run)} exits after 1 run(s): its run left the {leaves}" in said, said
        assert count(nectar, 2).state == RunState.DONE
    finally:
        if left:
            os.kill(left, signal.SIGKILL)


#: a chain whose file, executed ahead (:func:`nectar.catalog.loader.load_ahead`) by a process back from a run of it (a
#: fresh spare never ran one), keeps that process in its setup while the file HOLD exists, past the budget of an
#: execution ahead too; ``<HOLD>.<pid>`` says it is held
HELD_CHAIN = """
import os
import signal
import time

import luigi
from nectar import NectarTask

HOLD = {hold!r}
if os.path.exists(f"{{HOLD}}.ran.{{os.getpid()}}") and os.path.exists(HOLD):  # this process ran a RanTask
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    open(f"{{HOLD}}.{{os.getpid()}}", "w").close()
    while os.path.exists(HOLD):
        time.sleep(0.05)


class RanTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        open(f"{{HOLD}}.ran.{{os.getpid()}}", "w").close()  # not an environment variable: put back after a run
        with self.output().open("w") as out:
            out.write("ran\\n")
"""


def test_a_queued_run_never_waits_for_the_processes_back_from_their_runs_to_be_set_up_again(
    reusing: Settings, start_worker: StartWorker, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Each process back from its run stays in its setup (HOLD): a run queued after is claimed all the same, by a
    spare forked meanwhile, where the worker counted the held ones among the spares it keeps and forked none, the
    queue still until one was set up."""
    hold = tmp_path / "hold"
    hold.touch()
    write_chain("reuse/held_chain", HELD_CHAIN.format(hold=str(hold)))
    nectar = closed_at_end(Nectar(reusing))
    start_worker(reusing, workers=1)
    try:
        runs = []
        for n in range(6):  # more than the spares kept (3 for one slot), one after the other
            submission = nectar.submit("reuse", "held_chain", "RanTask", {"n": n})
            assert submission.run is not None
            runs.append(ended(nectar, submission.run.id))
        assert [run.state for run in runs] == [RunState.DONE] * 6
        assert not any(reused(run) for run in runs)  # none ran in a process back from a run: all are held
        wait_until(lambda: any(Path(f"{hold}.{pid_of(run)}").exists() for run in runs), timeout=60)
    finally:
        hold.unlink()


def test_a_process_whose_run_was_cancelled_exits(reusing: Settings, start_worker: StartWorker, tmp_path: Path) -> None:
    nectar = closed_at_end(Nectar(reusing))
    start_worker(reusing, workers=1)
    until_reused(nectar, 1)  # processes do take another run here
    gate = tmp_path / "gate"
    run_id = submit(nectar, "HeldTask", n=1, gate=str(gate))
    wait_until(lambda: Path(f"{gate}.started").exists(), timeout=60)
    held = int(Path(f"{gate}.started").read_text())

    nectar.cancel(run_id)

    assert ended(nectar, run_id).state == RunState.CANCELLED
    wait_until(lambda: not alive(held), timeout=60)
    assert count(nectar, 100).state == RunState.DONE


def test_a_process_killed_between_runs_or_during_a_reused_one_loses_no_run(
    reusing: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    nectar = closed_at_end(Nectar(reusing))
    worker = start_worker(reusing, workers=1)
    runs = until_reused(nectar, 1)
    waiting = pid_of(runs[-1])  # back among the spares, waiting for a run
    wait_until(lambda: waiting in children(worker.pid), timeout=60)

    os.kill(waiting, signal.SIGKILL)
    after = [count(nectar, 100 + i) for i in range(3)]
    held = None
    for n in range(10):  # until one is held by a process that ran one before (the spares take runs in turn)
        gate = tmp_path / f"gate-{n}"
        run_id = submit(nectar, "HeldTask", n=n, gate=str(gate))
        wait_until(Path(f"{gate}.started").exists, timeout=60)
        held = nectar.runs.get(run_id)
        assert held is not None
        if reused(held):
            break
        gate.touch()
        assert ended(nectar, run_id).state == RunState.DONE
    assert held is not None and reused(held), held
    killed = int(Path(f"{gate}.started").read_text())
    os.kill(killed, signal.SIGKILL)
    gate.touch()

    assert [(run.state, run.attempt) for run in after] == [(RunState.DONE, 1)] * 3
    retried = ended(nectar, run_id)
    assert (retried.state, retried.attempt) == (RunState.DONE, 2)
    said = [line for log in tmp_path.glob("worker-*.log") for line in log.read_text().splitlines() if run_id in line]
    warned = [line for line in said if "WARNING" in line and "killed by signal 9" in line]
    assert len(warned) == 1 and f"attempt 1's process {killed} killed by signal 9; it will be retried" in warned[0]
    assert worker.poll() is None


#: in a process of its own (its only child processes and threads its own): a run's registry turns that wake the
#: registry's checkpointer, then what :func:`nectar.reuse.left_behind` says of the process; prints the threads the
#: turns started and that
WAKES_THE_CHECKPOINTER = """
import sys, threading
from nectar import reuse
from nectar.registry import sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.suitenectarB_runs import new_run

store = SQLiteRunStore(sys.argv[1])
store.submit(new_run(0))
before = reuse.before_run()
for _ in range(sqlite_checkpoints.CHECKPOINT_TURNS):  # the run's turns: the last wakes the thread, starting it
    store.checkpoints.wrote()
assert store.checkpoints.wait_made(1, 60.0)
print([thread.name for thread in threading.enumerate() if thread not in before.threads], reuse.left_behind(before, 0))
store.close()
"""


@pytest.mark.parametrize(
    ("data_dir", "said"),
    [(".", "None"), ("service", "its run left the thread 'sqlite-checkpoint' running")],
    ids=["the-processs-registry", "another-file"],
)
def test_a_run_that_woke_the_registrys_checkpointer_leaves_no_thread_behind(
    tmp_path: Path, data_dir: str, said: str
) -> None:
    """The registry's checkpointer, started by a run's writes (a spare's attempt writes a few turns per run, and the
    CHECKPOINT_TURNS-th wakes it), is the process's own: the process takes another run, where it exited after
    waiting THREAD_GRACE for the thread (every spare of a worker at once, their slots idle meanwhile). Only the
    registry its settings name (``NECTAR_DATA_DIR``'s): the checkpointer of a registry of another file, which a run's
    code opened, is a thread the run left."""
    argv = [sys.executable, "-c", WAKES_THE_CHECKPOINTER, str(tmp_path / "runs.sqlite3")]
    env = {**base_env(), **lifeline_env(), "NECTAR_DATA_DIR": str(tmp_path / data_dir)}
    done = subprocess.run(argv, env=env, cwd=REPOSITORY, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == f"['sqlite-checkpoint'] {said}"
