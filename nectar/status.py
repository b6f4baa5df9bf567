"""Answer a target key's job status from the registry, the store and, as a fallback, luigid.

``job_status`` words are luigi's: PENDING (queued, not started), RUNNING, DONE, FAILED, and
UNKNOWN for a task that was started outside any run this registry knows (its ``params.txt``
exists) and that the scheduler does not know either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nectar.errors import RunNotFound, SchedulerUnavailable
from nectar.keys import OUTPUT_FILE, PARAMS_FILE, TargetKey
from nectar.runs import Run, RunState, RunStore, Step
from nectar.scheduler import SchedulerClient
from nectar.stores import TargetStore


@dataclass(frozen=True)
class JobStatus:
    key: TargetKey
    job_status: str
    run: Run | None = None
    steps: list[Step] = field(default_factory=list)
    resource_url: str | None = None
    expires_in: int | None = None
    failed_step: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.job_status == RunState.DONE


def _from_scheduler(key: TargetKey, store: TargetStore, scheduler: SchedulerClient | None) -> JobStatus | None:
    """A task started outside the registry (``nectar run``, plain luigi): params.txt tells its task_id."""
    params_key = key.with_file(PARAMS_FILE)
    if not store.exists(params_key):
        return None
    task_id = json.loads(store.read_text(params_key)).get("task_id")
    if scheduler is not None and task_id:
        try:
            record = scheduler.task(task_id)
        except SchedulerUnavailable:
            record = None
        if record is not None:
            return JobStatus(key, str(record.get("status", "UNKNOWN")))
    return JobStatus(key, "UNKNOWN", error="started outside this registry; the scheduler does not know it")


def job_status(
    key: TargetKey,
    *,
    store: TargetStore,
    runs: RunStore,
    scheduler: SchedulerClient | None = None,
    expires_in: int = 600,
) -> JobStatus:
    """The status of the task whose folder ``key`` is in; :class:`RunNotFound` if nothing knows it."""
    key = key.with_file(OUTPUT_FILE)
    run = runs.latest(key.path)
    steps = runs.steps(run.id) if run else []
    if run is not None and run.state.active:
        return JobStatus(key, run.state.value, run, steps)
    if store.exists(key):
        return JobStatus(key, RunState.DONE.value, run, steps, store.url(key, expires_in), expires_in)
    if run is not None:
        return JobStatus(key, run.state.value, run, steps, failed_step=run.failed_step, error=run.error)
    found = _from_scheduler(key, store, scheduler)
    if found is None:
        raise RunNotFound(f"no run and no target for {key.path}")
    return found
