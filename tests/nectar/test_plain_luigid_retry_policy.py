"""luigi's own luigid (none of our patches) judges a step's failures by the step's own retry policy after the service
tells it of the step: luigi's ``add_task`` sets the policy it holds for a task from every call, to its
``[scheduler]`` defaults where the call sends none (luigi's 999999999 here), and judges each later failure by it until a
worker adds the task again. So every ``add_task`` the service sends where it has the task carries the task's policy,
as luigi's worker sends it: the DONE of a step another worker made since it was scheduled here
(``Worker._made_by_another``), and the FAILED an attempt tells of its own steps as it stops
(``leases.release`` with ``Build.policies``)."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi
import pytest

from harness import Processes, Served, stop
from nectar.build import Build
from nectar.leases import release
from nectar.luigi_internals import forget_task_classes
from nectar.luigid import LuigidRPC, SchedulerClient
from nectar.registry import Run, Step
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end, known

#: luigi's retry_count (999999999) and disable_window; a FAILED task PENDING again at luigid's next prune, which every
#: get_work makes
LUIGI_CFG = "[core]\nlog_level = WARNING\n[scheduler]\nretry_delay = 0\nprune_on_get_work = true\n"


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Served]:
    """luigi's own luigid, started as ``luigid`` starts it, with :data:`LUIGI_CFG`."""
    config = tmp_path / "luigi.cfg"
    config.write_text(LUIGI_CFG)
    processes = Processes(tmp_path / "logs")
    try:
        yield processes.luigid(None, tmp_path / "luigid", config, plain=True)
    finally:
        processes.close()


@pytest.fixture
def forgets_its_classes() -> Iterator[None]:
    yield
    forget_task_classes(__name__)


def held_policy(served: Served, state: Path, task_id: str) -> Any:
    """The retry policy luigid ``served`` holds for ``task_id``, read from the state it saves as it stops."""
    stop(served.proc)
    with state.open("rb") as saved:
        tasks = pickle.load(saved)[0]
    return tasks[task_id].retry_policy


def test_a_step_made_by_another_worker_is_told_done_with_its_own_retry_policy(
    plain: Served, tmp_path: Path, forgets_its_classes: None
) -> None:
    """``_made_by_another`` tells luigid DONE of a step granted here that another worker made meanwhile, as luigi's
    ``_add`` tells a complete one, and now with the step's policy: luigi's luigid held its defaults for it after."""
    asked: list[str] = []

    class MadeMeanwhile(luigi.Task):
        retry_count = 2
        disable_window = 60
        n = luigi.Parameter()

        def complete(self) -> bool:
            asked.append(self.task_id)
            return len(asked) > 1  # undone as luigi's worker schedules it, made before it runs

        def run(self) -> None:
            raise AssertionError("made by another worker: not run again")

    task = MadeMeanwhile(n=uuid.uuid4().hex)
    Build(f"http://127.0.0.1:{plain.port}", "made-meanwhile:1").run(task)
    assert len(asked) == 2  # scheduled undone, found made as luigid granted it

    policy = held_policy(plain, tmp_path / "luigid" / "state.pickle", task.task_id)
    assert (policy.retry_count, policy.disable_window) == (2, 60)  # was luigid's defaults (luigi's 999999999, 3600)


def test_a_step_an_attempt_released_is_disabled_by_its_own_retry_count_at_its_next_failure(
    plain: Served, tmp_path: Path, forgets_its_classes: None
) -> None:
    """An attempt that stops (timed out, or its worker stopping) tells luigid its running steps FAILED
    (``leases.release``), each with its policy (``Build.policies``): a step with ``retry_count`` 2, failed so and then
    taken and failed by another run's attempt that had added it before, is disabled at that second failure. Without
    its policy luigi's luigid took its defaults at the first and judged the second by them: not disabled."""

    class SharedStep(luigi.Task):
        retry_count = 2
        n = luigi.Parameter()

        def complete(self) -> bool:
            return False

    task = SharedStep(n=uuid.uuid4().hex)
    url = f"http://127.0.0.1:{plain.port}"
    client = SchedulerClient(url, 60)
    stopping, waiting = Build(url, "stopping:1"), Build(url, "waiting:1")
    for build in (stopping, waiting):  # two runs' attempts that need the step: each adds it, with its policy
        build.worker.add(task)
        assert isinstance(build.scheduler, LuigidRPC)
        build.scheduler.send_held()
    assert client.call("get_work", worker=stopping.worker_id)["task_id"] == task.task_id

    runs = closed_at_end(SQLiteRunStore(tmp_path / "data" / "runs.sqlite3"))
    with runs:
        runs.submit(Run.new("chains/t/c_chain/SharedStep/k/out.txt", "t", "c_chain", "SharedStep", {}, task.task_id))
        run = known(runs.claim("stopping:1"))
        runs.record_steps([Step(run.id, task.task_id, "SharedStep", None, "RUNNING")])
        release(runs, run, "timed out", client, policies=stopping.policies())  # the attempt's own: failure 1

    assert client.call("get_work", worker=waiting.worker_id)["task_id"] == task.task_id  # PENDING again, granted
    told = {"expl": "boom", "retry_policy_dict": {"retry_count": 2}}  # as luigi's worker tells its step's failure
    client.call("add_task", worker=waiting.worker_id, task_id=task.task_id, status="FAILED", **told)

    assert known(client.task(task.task_id))["status"] == "DISABLED"  # its retry_count, 2 (was luigi's 999999999)


def test_a_step_told_disabled_with_its_policy_keeps_it(plain: Served, tmp_path: Path) -> None:
    """``SchedulerClient.disable`` (a cancelled run's steps) sends the policy it is given, with the DISABLED and with
    the uncounted FAILED before it of a step RUNNING in the worker's name: luigi's luigid holds the step's own, not
    its defaults, when the step is submitted again."""
    client = SchedulerClient(f"http://127.0.0.1:{plain.port}", 60)
    policy = {"retry_count": 2, "disable_hard_timeout": None, "disable_window": 60}
    task_id, worker = f"Cancelled_{uuid.uuid4().hex}", "Worker(salt=cancel, workers=1, host=h, username=u, pid=1)"
    client.call("add_task", worker=worker, task_id=task_id, status="PENDING", family="Cancelled", runnable=True)
    assert client.call("get_work", worker=worker)["task_id"] == task_id  # RUNNING in the worker's name
    client.disable(task_id, worker, "cancelled", policy)
    assert known(client.task(task_id))["status"] == "DISABLED"

    held = held_policy(plain, tmp_path / "luigid" / "state.pickle", task_id)
    assert (held.retry_count, held.disable_window) == (2, 60)
