"""luigid's scheduler makes a task only for an id it does not know, and a retry policy once for each sent
(:func:`nectar.luigi_internals.luigid_makes_once`, set as luigid routes its RPCs): a step's DONE, of a task its
PENDING added, makes none, and leaves the scheduler's state as luigi's own would."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import luigi.scheduler
import luigi.server
import pytest

from nectar.luigid_server import LuigidRouter

#: a run's calls to luigid for a step with one dep, as a worker makes them (the times luigi notes aside)
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("add_task", {"task_id": "D", "status": "DONE", "family": "D", "params": {}}),
    ("add_task", {"task_id": "T", "status": "PENDING", "deps": ["D"], "family": "T", "params": {"n": "1"}}),
    ("get_work", {}),
    ("add_task", {"task_id": "T", "status": "DONE", "deps": ["D"], "family": "T", "params": {"n": "1"}}),
]


#: the ids of the tasks luigi's scheduler made (:class:`Counted`)
MADE: list[str] = []


class Counted(luigi.scheduler.Task):
    """luigi's scheduler's task, each making noted in :data:`MADE`."""

    def __init__(self, task_id: str, *args: Any, **kwargs: Any) -> None:
        MADE.append(task_id)
        super().__init__(task_id, *args, **kwargs)


def _state(scheduler: luigi.scheduler.Scheduler) -> dict[str, Any]:
    """Each task's attributes but its times, and the tasks of each status in their order."""
    state = scheduler._state
    tasks = {
        task_id: {k: v for k, v in vars(task).items() if k not in ("time", "updated", "time_running")}
        for task_id, task in state._tasks.items()
    }
    statuses = {status: list(tasks) for status, tasks in state._status_tasks.items() if tasks}
    return {"tasks": tasks, "statuses": statuses}


def _drive(scheduler: luigi.scheduler.Scheduler) -> None:
    for method, arguments in CALLS:
        getattr(scheduler, method)(worker="w1", **arguments)


def test_luigids_scheduler_makes_a_task_only_for_an_id_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = inspect.getsource(luigi.scheduler.SimpleTaskState.get_task).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == "3d9be00a0299ad75", "luigi changed SimpleTaskState.get_task"
    made = MADE
    made.clear()
    monkeypatch.setattr(luigi.scheduler, "Task", Counted)
    plain = luigi.scheduler.Scheduler(record_task_history=False)
    _drive(plain)
    assert made == ["D", "T", "D", "T", "D"]  # luigi's own: the DONE of T makes T and its dep again, both dropped

    made.clear()
    scheduler = luigi.scheduler.Scheduler(record_task_history=False)
    LuigidRouter(luigi.server.app(scheduler), scheduler)  # as luigid serves it (twice: a socket each)
    LuigidRouter(luigi.server.app(scheduler), scheduler)
    _drive(scheduler)
    assert made == ["D", "T"]
    assert _state(scheduler) == _state(plain)

    # a task its state file brought back is one it knows (luigid routes, then loads: the tasks are replaced)
    scheduler._state._state_path = str(tmp_path / "state.pickle")
    scheduler.dump()
    again = luigi.scheduler.Scheduler(record_task_history=False, state_path=str(tmp_path / "state.pickle"))
    LuigidRouter(luigi.server.app(again), again)
    again.load()
    made.clear()
    again.add_task(worker="w1", task_id="T", status="DONE", family="T", params={"n": "1"})
    again.add_task(worker="w1", task_id="N", status="PENDING", family="N", params={})
    assert made == ["N"]
    assert again._state._status_tasks["DONE"]["T"] is again._state._tasks["T"]


#: the retry policies luigi's scheduler made (:func:`_counted_policy`)
POLICIES: list[tuple[Any, ...]] = []


def _counted_policy(*args: Any, **kwargs: Any) -> Any:
    made = RETRY_POLICY(*args, **kwargs)
    POLICIES.append(tuple(made))
    return made


RETRY_POLICY = luigi.scheduler.RetryPolicy


def test_luigids_scheduler_makes_each_retry_policy_sent_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same policy sent again is the one made first; one whose values differ in type, or have no hash, is made
    apart; each task holds the policy luigi's own scheduler gives it."""
    monkeypatch.setattr(luigi.scheduler, "RetryPolicy", _counted_policy)
    sent: list[dict[str, Any]] = [
        {"retry_count": 2, "disable_hard_timeout": None, "disable_window": None},
        {"retry_count": 2, "disable_hard_timeout": None, "disable_window": None},
        {"retry_count": True, "disable_hard_timeout": None, "disable_window": None},
        {"retry_count": 2, "disable_hard_timeout": [1], "disable_window": None},
        {"retry_count": 2, "disable_hard_timeout": [1], "disable_window": None},
    ]
    plain = luigi.scheduler.Scheduler(record_task_history=False)
    scheduler = luigi.scheduler.Scheduler(record_task_history=False)
    LuigidRouter(luigi.server.app(scheduler), scheduler)
    counted = []
    for kept in (plain, scheduler):
        POLICIES.clear()
        for n, policy in enumerate(sent):
            kept.add_task(worker="w1", task_id=f"T{n}", status="PENDING", family="T", retry_policy_dict=policy)
        counted.append(len(POLICIES))
    assert counted == [10, 8]  # each call: luigid's [scheduler] policy and the task's; none for the repeated one
    held = [(task.retry_policy, type(task.retry_policy.retry_count)) for task in scheduler._state._tasks.values()]
    assert held == [(task.retry_policy, type(task.retry_policy.retry_count)) for task in plain._state._tasks.values()]
