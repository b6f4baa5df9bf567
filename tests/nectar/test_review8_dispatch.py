"""review8 (round 54): an attempt's lease and luigid's view while the attempt schedules its task, through a real worker
and luigid: what the attempt holds between its claim and its step's ``run()``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import luigi
import pytest

from nectar import build as build_module
from nectar import luigi_internals
from nectar.build import luigi_worker_id
from nectar.config import Settings
from nectar.leases import process_name, reclaim
from nectar.luigid import SchedulerClient, scheduler_of
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.luigid import luigid_tasks
from tests.helpers.registries import closed_at_end
from tests.nectar.test_attempt import FirstAttempt, own_luigid, running_in_luigid  # noqa: F401 (a fixture)
from tests.nectar.test_killed_attempt import retried_run

#: a task whose one dependency's ``complete()`` (which luigi's worker asks as the attempt adds the task, before it asks
#: luigid for a step) says it is checking, then waits for a flag file: a scheduling that takes as long as the test
#: wants, as one of a large graph's (a ``complete()`` per step, each an S3 HEAD) or of a slow store does
SLOW_TO_SCHEDULE_CHAIN = """
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class SlowToCheck(luigi.Task):
    flag = luigi.Parameter()

    def complete(self):
        Path(self.flag + ".checking").touch()
        while not Path(self.flag).exists():
            time.sleep(0.05)
        return True


class ScheduledTask(NectarTask):
    flag = luigi.Parameter()

    def requires(self):
        return SlowToCheck(flag=self.flag)

    def run(self):
        with self.output().open("w") as out:
            out.write("done\\n")
"""


def test_an_attempt_renews_its_lease_while_luigi_s_worker_adds_its_task(
    settings: Settings,
    luigid: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    """The heartbeat beats from the attempt's start, through the scheduling of its task (luigi's ``worker.add``, a
    ``complete()`` per step of the graph), not only once luigid is asked for the first step: an attempt silent for
    ``lease_timeout`` (20 s by default) while a large graph is checked is taken for lost, its run reclaimed (FAILED
    without retries, else run again by another attempt while this one still schedules). The attempt here waits in a
    dependency's ``complete()`` until the test has seen a renewal (heartbeat every 0.5 s: ``settings``)."""
    write_chain("slow/slow_chain", SLOW_TO_SCHEDULE_CHAIN)
    flag = tmp_path / "go"
    on_luigid = settings.replace(scheduler_url=luigid)
    _, _, current = retried_run(on_luigid, start_worker, ("slow", "slow_chain", "ScheduledTask"), {"flag": str(flag)})
    try:
        wait_until(lambda: Path(f"{flag}.checking").exists())
        scheduling = current()
        assert scheduling.state == RunState.RUNNING and scheduling.heartbeat_at is not None
        # the dependency's complete() waits for the flag this test has not written: any renewal from here on was made
        # while the attempt's worker was adding its task
        wait_until(lambda: (current().heartbeat_at or 0.0) > (scheduling.heartbeat_at or 0.0))
    finally:
        flag.touch()
    wait_until(lambda: current().state == RunState.DONE)


def test_an_attempt_stopped_once_luigid_granted_its_step_leaves_nothing_running_in_luigid_in_its_name(
    settings: Settings,
    own_luigid: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attempt's worker stops (SIGTERM) while the attempt makes its step's folders, luigid answering the request
    that granted the step: the run is requeued, not counted, and luigid is left with nothing RUNNING in the attempt's
    worker's name. It kept the step RUNNING there until it timed that worker out (``worker_disconnect_delay``, 30 s
    after the process's last ping), then counted a failure of it; meanwhile the requeued run's next attempt was told
    another worker runs its step, and waited (``leases.release`` told luigid only of the steps the registry had RUNNING,
    until 9cb7d1b)."""
    first = FirstAttempt(settings, own_luigid)
    watcher = scheduler_of(first.settings)
    assert watcher is not None
    make_folders = build_module.make_folders_ahead

    def stopped_meanwhile(task: luigi.Task) -> None:
        wait_until(lambda: running_in_luigid(watcher, first.task_id))  # granted: the request was written
        os.kill(os.getpid(), signal.SIGTERM)  # the lease's handler raises Interrupted here: the worker is stopping
        make_folders(task)

    monkeypatch.setattr(build_module, "make_folders_ahead", stopped_meanwhile)
    ending = first.attempt()
    assert ending.state == RunState.PENDING
    assert running_in_luigid(watcher, first.task_id) is None


#: a task whose two dependencies are of one batchable family (luigi's ``batch_method``): luigid grants them to one
#: worker as one batch, its answer's ``task_id`` None, the batch's in ``batch_task_ids``
BATCH_CHAIN = """
import luigi

from nectar import NectarTask


class PartTask(NectarTask):
    n = luigi.IntParameter(batch_method=max)

    def run(self):
        with self.output().open("w") as out:
            out.write("part\\n")


class WholeTask(NectarTask):
    def requires(self):
        return [PartTask(n=1), PartTask(n=2)]

    def run(self):
        with self.output().open("w") as out:
            out.write("whole\\n")
"""


def held_in_luigid(client: SchedulerClient, worker: str) -> dict[str, str]:
    """The tasks luigid holds RUNNING or BATCH_RUNNING in ``worker``'s name, and their status."""
    return {
        task_id: str(status)
        for task_id, (status, holder) in luigid_tasks(client).items()
        if holder == worker and status in ("RUNNING", "BATCH_RUNNING")
    }


def test_an_attempt_stopped_once_luigid_granted_it_a_batch_leaves_nothing_of_it_running_in_luigid(
    settings: Settings,
    own_luigid: str,  # noqa: F811
    write_chain: Callable[[str, str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attempt's worker stops (SIGTERM) as luigi's worker is about to run the batch luigid granted it (two steps
    of one batchable family, BATCH_RUNNING in luigid, the batch's task RUNNING): the run is requeued, and luigid is
    left with nothing of the batch RUNNING or BATCH_RUNNING in the attempt's worker's name. The registry has neither
    step RUNNING, so ``leases.release`` told luigid nothing of them until 9cb7d1b. (wt54-dispatch2's ``give_back``,
    not merged, told luigid nothing of a batch either: its answer's ``task_id`` is None, the steps in
    ``batch_task_ids``; review8's 09f4d05 has that branch's test.)"""
    write_chain("batches/batch_chain", BATCH_CHAIN)
    first = FirstAttempt.__new__(FirstAttempt)
    first.settings, first.luigid = settings.replace(scheduler_url=own_luigid), own_luigid
    first.nectar = closed_at_end(Nectar(first.settings))
    submission = first.nectar.submit("batches", "batch_chain", "WholeTask", {})
    assert submission.run is not None
    first.claim(submission.run.id)
    watcher = scheduler_of(first.settings)
    assert watcher is not None
    run_task = luigi_internals.Worker._run_task

    def stopped_first(worker: luigi_internals.Worker, task_id: str) -> None:
        held = held_in_luigid(watcher, first.build.worker_id)
        assert sorted(held.values()).count("BATCH_RUNNING") == 2, held  # the batch granted, not started
        os.kill(os.getpid(), signal.SIGTERM)  # the lease's handler raises Interrupted here: the worker is stopping
        run_task(worker, task_id)

    monkeypatch.setattr(luigi_internals.Worker, "_run_task", stopped_first)
    ending = first.attempt()
    assert ending.state == RunState.PENDING
    assert held_in_luigid(watcher, first.build.worker_id) == {}


def test_an_attempt_killed_once_luigid_granted_its_step_leaves_nothing_running_in_luigid_after_its_reclaim(
    settings: Settings,
    own_luigid: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """An attempt's process (forked here, as a worker forks one) is killed (SIGKILL) while it makes its step's folders,
    luigid answering the request that granted the step; the worker's reclaim of the dead attempt (``leases.reclaim``,
    its loop's) tells luigid the attempt's steps ended: luigid is left with nothing RUNNING in the dead attempt's
    worker's name. It kept the step RUNNING until it timed that worker out (``worker_disconnect_delay``, 30 s), then
    counted a failure of it; the run's next attempt meanwhile was told another worker runs its step (until 9cb7d1b:
    ``leases.release`` told luigid only of the steps the registry had RUNNING)."""
    first = FirstAttempt.__new__(FirstAttempt)
    first.settings, first.luigid = settings.replace(scheduler_url=own_luigid), own_luigid
    first.nectar = closed_at_end(Nectar(first.settings))
    run = first.nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {}).run
    assert run is not None
    watcher = scheduler_of(first.settings)
    assert watcher is not None
    granted = tmp_path / "granted"

    def held_meanwhile(task: luigi.Task) -> None:
        granted.touch()
        time.sleep(600)  # killed here

    monkeypatch.setattr(build_module, "make_folders_ahead", held_meanwhile)
    pid = os.fork()
    if pid == 0:  # the attempt's process
        try:
            first.claim(run.id)
            first.attempt()
        finally:
            os._exit(1)
    try:
        worker = luigi_worker_id(process_name(pid))
        wait_until(granted.exists)
        wait_until(lambda: running_in_luigid(watcher, run.task_id) == worker)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert [run.id for run in reclaim(first.nectar.runs, first.settings.lease_timeout, watcher)] == [run.id]
    assert held_in_luigid(watcher, worker) == {}
