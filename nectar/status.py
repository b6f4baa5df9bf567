"""Answer a target key's job status from the registry, the store and, as a fallback, luigid.

``job_status`` words are luigi's: PENDING (queued, not started, or waiting for a retry), RUNNING,
WAITING (for data an external task names, holding no worker: the run's ``waiting_for`` says what),
DONE, FAILED, CANCELLED, and UNKNOWN for a task that was started outside any run this registry knows (its ``params.txt``
exists) and that the scheduler does not know either. DONE once the task's output exists, whatever its run's row says
(luigi's rule: :func:`made`). A status only reads: a run whose attempt was lost
is RUNNING, saying so, until a worker reclaims it (:mod:`nectar.leases`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from nectar.errors import RunNotFound, SchedulerUnavailable, Unavailable
from nectar.keys import OUTPUT_FILE, PARAMS_FILE, STDOUT_FILE, TargetKey
from nectar.leases import lapsed
from nectar.luigid import SchedulerClient
from nectar.registry import Run, RunState, RunStore, Step
from nectar.registry.schema import RunStatus, StepStatus
from nectar.stores import TargetStore
from nectar.task import live_log_paths

#: the states of a run that has not ended (:attr:`RunState.active`), a set: asked of every status lookup
ACTIVE = frozenset(state for state in RunState if state.active)
#: the job status of a task whose output exists
DONE = RunState.DONE.value


class JobStatus(NamedTuple):
    """A key's job status, and what it was found from. A named tuple, not a frozen dataclass: a status lookup makes
    one, and a frozen dataclass's ``__init__`` sets each of its 9 fields through ``object.__setattr__`` (~14.6k
    instructions, callgrind; this ~2k)."""

    key: TargetKey
    job_status: str
    #: the key's latest run: as a status lookup reads it (:meth:`~nectar.registry.RunStore.latest_status`), or whole
    run: Run | RunStatus | None = None
    #: its steps: as a status lookup reads them, or whole
    steps: Sequence[Step | StepStatus] = ()
    resource_url: str | None = None
    expires_in: int | None = None
    failed_step: str | None = None
    error: str | None = None
    #: the task's parameters (luigi's string form) when known without a run (a submission's own task)
    params: Mapping[str, str] | None = None

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


def made(key: TargetKey, store: TargetStore, answered: bool) -> bool:
    """Whether the output ``key`` exists: luigi's rule, a task is complete once its output exists, whatever its run's
    row says. A run still queued (or waiting) for it is done all the same: its attempt was lost after the output's
    commit and before its end's transaction (killed, its worker stopped: the run requeued, its next attempt perhaps
    behind a deep queue), or another run made the output; its next attempt finds the task complete and runs nothing.
    So is a run that failed after the commit (killed, no retry left). Not asked of a RUNNING run: its attempt records
    its end just after the commit, and a job answered DONE has its run and steps ended (a lost attempt's run reads
    RUNNING, saying so, until its reclaim requeues or fails it). When the store cannot say: False if the run's own
    state is an ``answered`` status (as before the store was asked for it), else the lookup fails."""
    try:
        return store.exists(key)
    except Unavailable:
        if answered:
            return False
        raise


def job_status(
    key: TargetKey,
    *,
    store: TargetStore,
    runs: RunStore,
    scheduler: SchedulerClient | None = None,
    expires_in: int = 600,
    lease_timeout: float | None = None,
) -> JobStatus:
    """The status of the task whose folder ``key`` is in; :class:`RunNotFound` if nothing knows it. A read only.

    A RUNNING run whose attempt is lost (no heartbeat for ``lease_timeout``, or its process gone) is
    answered RUNNING with an error saying so: a worker reclaims it (retries or fails it), never a read.
    """
    key = key.with_file(OUTPUT_FILE)
    run, steps = runs.latest_status(key.path)  # one read: the run and its steps as of the same moment
    active = run is not None and run.state in ACTIVE
    if (run is None or run.state is not RunState.RUNNING) and made(key, store, active):
        return JobStatus(key, DONE, run, steps, store.url(key, expires_in), expires_in)
    if run is not None and active:  # a retried run shows what failed in its last attempt
        why = lapsed(run, runs, lease_timeout) if lease_timeout is not None else None
        lost = f"worker lost: {run.worker} ({why}) during attempt {run.attempt}; a worker will reclaim it"
        error = lost if why else run.error
        return JobStatus(key, run.state.value, run, steps, failed_step=run.failed_step, error=error)
    if run is not None:
        return JobStatus(key, run.state.value, run, steps, failed_step=run.failed_step, error=run.error)
    found = _from_scheduler(key, store, scheduler)
    if found is None:
        raise RunNotFound(f"no run and no target for {key.path}")
    return found


class LogSource(NamedTuple):
    """Whose logs a status links to: ``key``'s (a task's out.txt), ``task`` by name, and a ``note``
    when they are not the requested task's own (``key`` None: no task has a log to show yet).
    ``ran_here``: the task executed in this run (or runs now), so its log is there without looking.
    A named tuple, as :class:`JobStatus` is (a frozen dataclass of 5 fields: ~9.8k instructions a lookup)."""

    key: TargetKey | None
    task: str | None
    note: str | None = None
    ran_here: bool = False
    #: what to say instead when ``key`` has no log after all (only looked up when not ``ran_here``)
    absent: str | None = None


def has_log(key: TargetKey, store: TargetStore) -> bool:
    """Whether the log of the task of ``key`` can be served: its live stdout file, else its stored copy."""
    return live_log_paths(key)[0].exists() or store.exists(key.with_file(STDOUT_FILE))


def log_lookup(key: TargetKey, task: str, logged: Callable[[TargetKey], bool]) -> str | None:
    """None when the task of ``key`` left a log (asked with ``logged``); "" when it did not; else why the
    store could not say (it is unavailable: the status is answered all the same, without the link)."""
    try:
        return None if logged(key) else ""
    except Unavailable as exc:
        return f"{task}'s log could not be looked up: {exc}"


def no_log_note(task: str, state: str) -> str:
    """Why a task that did not execute in this run has no log to link to."""
    if state == RunState.PENDING:
        return f"{task} has not started: it has no log yet"
    if state == RunState.DONE:
        return f"{task} was done before this run; it left no log here"
    return f"{task} did not run here: it has no log"


def step_log_note(step: Step | StepStatus, logged: Callable[[TargetKey], bool]) -> str | None:
    """None when the step's log URLs answer, else why it has none. A step that executed in this run (or
    runs now) has its live log or its stored copy: only the others are looked up, with ``logged``."""
    if not step.key or step.executed:
        return None
    if step.state == RunState.PENDING:
        return no_log_note(step.task, step.state)
    missing = log_lookup(TargetKey.parse(step.key), step.task, logged)
    return no_log_note(step.task, step.state) if missing == "" else missing


def checked_source(source: LogSource, logged: Callable[[TargetKey], bool]) -> LogSource:
    """``source`` when its task ran here or left a log (looked up with ``logged``), else no link and why."""
    if source.key is None or source.ran_here:
        return source
    missing = log_lookup(source.key, source.task or source.key.task, logged)
    if missing is None:
        return source
    return LogSource(None, None, missing or source.absent or f"{source.task} left no log here")


def log_source(
    key: TargetKey, job_status: str, run: Run | RunStatus | None, steps: Sequence[Step | StepStatus]
) -> LogSource:
    """Whose logs to show for the task of ``key``: its own once it started (or when no run says otherwise);
    before that, the step running now, else the step that failed; else none, saying the task has not run."""
    key = key.with_file(OUTPUT_FILE)
    requested, path = key.task, key.path
    own = next((step for step in steps if step.key == path), None)
    if run is None or (own is not None and own.state != RunState.PENDING) or job_status == RunState.DONE:
        if own is None:
            return LogSource(key, requested, absent=f"{requested} was not run by this service: it left no log here")
        if own.executed:  # its log is there: what to say without one is never asked (checked_source)
            return LogSource(key, requested, ran_here=True)
        return LogSource(key, requested, absent=no_log_note(requested, own.state))
    not_run = f"{requested} has not started" if run.state.active else f"{requested} did not run"
    for state, which in ((RunState.RUNNING, "the step running now"), (RunState.FAILED, "the step that failed")):
        step = next((step for step in steps if step.state == state and step.key), None)
        if step is not None and step.key:
            note = f"{not_run}: these are the logs of {step.task}, {which}"
            absent = f"{not_run}; {no_log_note(step.task, step.state)}"
            return LogSource(TargetKey.parse(step.key), step.task, note, step.executed, absent)
    return LogSource(None, None, f"{not_run}{' yet' if run.state.active else ''}: it has no log")
