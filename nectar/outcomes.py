"""What an attempt's luigi build came to, beyond done or failed: a wait for luigid, a step luigid disabled,
a step whose own ``retry_count`` is used up, steps luigi left running.

luigi leaves a task undone with no step failing when luigid does not grant it: another worker runs
it (waited for as long as it runs), or luigid is paused or short of a resource (waited for at most
``WAIT_LIMIT`` seconds, saying luigid's reason), or luigid disabled a step after its ``retry_count``
failures (no use waiting: the run fails at once, saying until when). A new submission re-enables the
steps luigid disabled: the user asked again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import luigi
import luigi.configuration

from nectar.errors import SchedulerUnavailable
from nectar.luigi_internals import disabled_in_build, done_in_build
from nectar.luigid import BEYOND_POOL, SchedulerClient
from nectar.registry import Run, RunState, RunStore
from nectar.retry_count import attempts_used_up

logger = logging.getLogger(__name__)
#: seconds a run waits before trying again when luigid did not grant its task
BLOCKED_DELAY = 2.0
#: seconds a run may wait for luigid to grant its task (paused, short of resources) before it fails saying why
WAIT_LIMIT = 600.0


#: why luigi may leave a task undone with no step failing, and what the run then says while it waits
_WAITING = {
    "run_by_other_worker": "another worker is running it",
    "upstream_run_by_other_worker": "another worker is running a step it needs",
    "not_run": "luigid did not grant it (paused, short of resources, or restarted)",
}


def blocked_by(result: Any, task: luigi.Task) -> tuple[str, str] | None:
    """Why luigi left the task undone though no step failed, if it did (the kind, in luigi's summary's
    words, and what the run says); None if it did not. luigi's summary's groups, made once for the build
    (:attr:`~nectar.luigi_internals.RunResult.tasks_by_outcome`): the text of a failure read after is made of the
    same, as luigi makes its summary once, each still pending task's ``requires()`` asked once for it."""
    tasks = result.tasks_by_outcome
    return next(((kind, f"waiting: {why}") for kind, why in _WAITING.items() if task in tasks[kind]), None)


def disabled_by_its_class(result: Any, task: luigi.Task) -> tuple[str, str] | None:
    """If the build met a task whose class says luigi must not run it (luigi's ``Task.disabled``), as
    ``python -m luigi`` schedules no such task and leaves one needing it "not granted run permission": the step and
    the run's error, which no retry or wait changes (a class attribute of the chain). None if it met none."""
    off = disabled_in_build(result.worker)
    if off is None:
        return None
    why = f"{off.task_family} is disabled (its class sets disabled = True): luigi runs no disabled task"
    if off is task or off == task:
        return off.task_family, why
    return off.task_family, f"{task.task_family} needs {off.task_family}, which luigi will not run: {why}"


def ran(result: Any, task: luigi.Task) -> bool:
    """Whether luigi ran ``task`` without error in this build, or found it complete: luigi's DONE, which a task
    without outputs (its ``complete()`` always False) reaches only by running."""
    return done_in_build(result.worker, task)  # luigi's summary's "completed" or "already_done", without the rest


def _disabled_until(record: dict[str, Any]) -> str:
    """When luigid lifts its disable of a task (its last change plus luigi.cfg's ``disable_persist``), in UTC."""
    persist = luigi.configuration.get_config().getint("scheduler", "disable_persist", 86400)
    until = float(record.get("last_updated") or time.time()) + persist
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))


def re_enable_ahead(scheduler: SchedulerClient | None, run: Run, none_held: bool = False) -> None:
    """Ask luigid now what :func:`re_enable` will read for ``run`` (luigid answers while the attempt goes on); not
    asked if ``none_held``: luigid's last grant to this process said it held no DISABLED task. One disabled since is
    met by the build (luigid grants it no step) and learnt then (:func:`wait`): re-enabled, the run tried again."""
    if scheduler is not None and run.attempt == 1:
        if none_held:
            scheduler.none_disabled(run.task_id)
        else:
            scheduler.ask_disabled(run.task_id)


def re_enable(scheduler: SchedulerClient | None, run: Run) -> bool:
    """A new submission is the user asking again: luigid's own disable of the task's steps is lifted (those it
    knows as the task's; a step met disabled later is re-enabled by :func:`wait`). Whether any was."""
    if scheduler is None or run.attempt != 1:
        return False
    try:
        disabled = scheduler.disabled(run.task_id)
        for task_id in disabled:
            logger.info("run %s: re-enabling %s, disabled by luigid", run.id, task_id)
            scheduler.re_enable(task_id)
    except SchedulerUnavailable as exc:  # the build finds out for itself
        logger.warning("run %s: could not ask luigid for disabled steps: %s", run.id, exc)
        return False
    return bool(disabled)


def wait(scheduler: SchedulerClient | None, runs: RunStore, run: Run, kind: str, why: str) -> RunState | None:
    """luigi left the run's task undone, no step failing: wait in the queue, unless there is no use waiting.

    A step luigid has disabled (it failed ``retry_count`` times) is re-enabled once for a new submission (its
    first attempt, before it waited), and the run tried again at once; else it ends the run at once, saying
    until when. A task luigid does not grant (paused, short of resources) waits, saying luigid's reason when it
    tells one, at most ``WAIT_LIMIT`` seconds. A step another worker runs is waited for as long as it runs.
    """
    try:
        disabled = scheduler.disabled(run.task_id) if scheduler is not None else {}
        hold = scheduler.hold(run.task_id) if scheduler is not None and kind == "not_run" and not disabled else None
    except SchedulerUnavailable:
        disabled, hold = {}, None
    if disabled and run.waiting_since is None and re_enable(scheduler, run):
        runs.requeue(run.id, run.attempt, 0.0, "waiting: luigid re-enabled the steps it had disabled", waiting=True)
        return RunState.PENDING
    if disabled:
        task_id, record = next(iter(disabled.items()))
        step = str(record.get("name") or task_id).rsplit(".", 1)[-1]
        error = f"disabled by luigid until {_disabled_until(record)}: {task_id} failed too often; submit again to retry"
        return runs.fail(run.id, run.attempt, step, error, retryable=False)
    if hold is not None and hold.startswith(BEYOND_POOL):  # no wait grants it: said at once, as luigi refuses it
        return runs.fail(run.id, run.attempt, run.task, f"not granted: {hold}", retryable=False)
    why = f"waiting: {hold}" if hold else why
    waited = time.time() - (run.waiting_since or time.time())
    if kind == "not_run" and waited >= WAIT_LIMIT:
        error = f"{why}, for {waited:.0f} s: given up after {WAIT_LIMIT:.0f} s"
        return runs.fail(run.id, run.attempt, run.task, error, retryable=False)
    runs.requeue(run.id, run.attempt, BLOCKED_DELAY, why, waiting=True)
    return RunState.PENDING


def end_running_steps(runs: RunStore, run: Run, step: str) -> None:
    """A failed attempt leaves no step RUNNING: those luigi left so (one that yielded a step which then failed)
    fail too, naming the step that did, unless a later attempt has claimed the run since (a retry due at once);
    steps that never started stay PENDING."""
    runs.fail_running_steps(run, f"not finished: {step} failed")


def retries_used_up(
    failed: Sequence[luigi.Task], attempt: int, luigi_config: Path | None = None
) -> tuple[str, object] | None:
    """The first of an attempt's ``failed`` steps that allows no more attempts (:func:`retry_allowed`): its name and
    its ``retry_count``; None where each may be tried again. Any one of them ends the run: luigid disables that step,
    and each later attempt could not finish (the run's first failed step may allow more than a later one)."""
    for task in failed:
        allowed = retry_allowed(task, attempt, luigi_config)
        if allowed is not None:
            return type(task).__name__, allowed
    return None


def retry_allowed(task: luigi.Task | None, attempt: int, luigi_config: Path | None = None) -> object:
    """The ``retry_count`` of a failed step when it allows no more attempts (it governs the run), else None: by the
    rule its run's task's is read by (:func:`nectar.retry_count.attempts_used_up`: 0 or less, ``True``, one
    attempt; 2.5 three), luigi.cfg's ``[scheduler] retry_count`` (at ``luigi_config``) where the step sets none."""
    return attempts_used_up(task, attempt, luigi_config)
