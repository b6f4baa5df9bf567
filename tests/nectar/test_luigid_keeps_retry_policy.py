"""luigid keeps a task's retry policy when the service tells it of the task without one: a reclaim's FAILED
(:meth:`nectar.luigid.SchedulerClient.fail`), a cancel's DISABLED, a lost attempt's release. luigi's ``add_task``
sets the task's policy from every call, to luigid's ``[scheduler]`` defaults where the call names none; the call's
own failure is judged by the policy held before it, but every failure after it, until a worker next adds the task
with its policy, was judged by luigid's defaults: a step with ``retry_count`` 2 that a reclaim failed once and a
waiting worker then took (``retry_delay`` run out) and failed again was not disabled (luigid's 999), but retried.
luigi's worker sends none either where a running step sets its tracking URL (``set_tracking_url``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import luigi

from harness import Processes
from nectar.build import Build
from nectar.luigi_internals import forget_task_classes
from nectar.luigid import SchedulerClient
from tests.helpers.registries import known

#: luigi's retry_count (999) and disable_window; a FAILED task PENDING again at luigid's next prune, which every
#: get_work makes
LUIGI_CFG = "[core]\nlog_level = WARNING\n[scheduler]\nretry_delay = 0\nprune_on_get_work = true\n"
#: the step's own policy, as luigi's worker sends it (``_get_retry_policy_dict``): disabled at its second failure
POLICY = {"retry_count": 2, "disable_hard_timeout": None, "disable_window": None}


def worker(name: str) -> str:
    return f"Worker(salt={name}, workers=1, host=h, username=u, pid=1)"


def test_a_step_a_reclaim_failed_is_disabled_by_its_own_retry_count_at_its_next_failure(tmp_path: Path) -> None:
    config = tmp_path / "luigi.cfg"
    config.write_text(LUIGI_CFG)
    processes = Processes(tmp_path)
    try:
        client = SchedulerClient(f"http://127.0.0.1:{processes.luigid(None, tmp_path / 'luigid', config).port}", 60)
        task_id = f"Shared_{uuid.uuid4().hex}"
        lost, waiting = worker("lost"), worker("waiting")
        for each in (lost, waiting):  # two runs that need the step: one runs it, the other waits for it
            told = {"family": "Shared", "runnable": True, "retry_policy_dict": POLICY}
            client.call("add_task", worker=each, task_id=task_id, status="PENDING", **told)
        assert client.call("get_work", worker=lost)["task_id"] == task_id
        client.fail(task_id, lost, "worker lost: h:1")  # the reclaim's: failure 1 (FAILED, then PENDING)

        assert client.call("get_work", worker=waiting)["task_id"] == task_id  # PENDING again, granted
        client.call("add_task", worker=waiting, task_id=task_id, status="FAILED", expl="boom", retry_policy_dict=POLICY)

        assert known(client.task(task_id))["status"] == "DISABLED"  # its retry_count, 2 (was luigid's 999: PENDING)
    finally:
        processes.close()


def test_a_step_that_sets_its_tracking_url_then_fails_is_judged_by_its_own_retry_count(luigid: str) -> None:
    """luigi's worker tells luigid of a running step's tracking URL (an ``add_task`` RUNNING) without its retry policy:
    the step's failure, told next, was judged by luigid's defaults (the project's luigi.cfg: luigi's 999), and a step
    with ``retry_count`` 1 was left FAILED, not DISABLED."""
    failed: list[str] = []

    class TrackedOnce(luigi.Task):
        retry_count = 1
        n = luigi.Parameter()

        def complete(self) -> bool:
            return False

        def run(self) -> None:
            failed.append(self.task_id)
            tell: Callable[[str], None] | None = self.set_tracking_url  # luigi's worker sets it as the step runs
            assert tell is not None
            tell("http://tracker.invalid/job/1")
            raise RuntimeError("the step fails")

    try:
        Build(luigid, "tracked-build:1").run(TrackedOnce(n=uuid.uuid4().hex))
    finally:
        forget_task_classes(__name__)

    assert known(SchedulerClient(luigid, 60).task(failed[0]))["status"] == "DISABLED"  # was FAILED
