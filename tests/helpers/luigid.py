"""What a test asks luigid of the tasks it holds (luigi's ``task_list`` RPC, every status)."""

from __future__ import annotations

from typing import Any

from nectar.luigid import SchedulerClient


def luigid_tasks(scheduler: SchedulerClient) -> dict[str, tuple[Any, Any]]:
    """Every task luigid holds: its status and the worker it says runs it."""
    listed = scheduler.call("task_list", status="", upstream_status="", search=None) or {}
    return {task_id: (task.get("status"), task.get("worker_running")) for task_id, task in listed.items()}
