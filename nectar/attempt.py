"""One attempt of a run, in the process that executes it: its lease, its steps, its luigi build.

Nothing is lost and nothing runs twice at once:

- the process renews its attempt's lease (a heartbeat) every ``heartbeat_interval``; when the
  renewal is refused (the run was cancelled, or presumed lost and reclaimed) it interrupts its
  task and, if that does not end it, kills its process group;
- whatever the heartbeat has not yet seen, every commit of an output first confirms the lease
  (:mod:`nectar.fence`; a read while the last renewal is fresh, else a renewal) and is discarded
  if that is refused: a lost attempt writes nothing;
- each step's state goes to the registry through luigi's events (:mod:`nectar.steps`); the
  attempt's outcome is whether its task is complete, and a failure no retry cures (a chain that
  does not import, a missing bucket) ends the run at once;
- an attempt still running after its maximum runtime (``NECTAR_MAX_RUNTIME``, or its requested
  task's ``max_runtime``) fails its run, "timed out", not retried, and stops as a cancelled one does;
- an attempt that leaves its task undone because an external task's data is missing puts its run to
  WAITING, not counted, for at most ``NECTAR_WAIT_TIMEOUT`` (or the requested task's ``wait_timeout``)
  seconds: its process is free for the next run, and :mod:`nectar.waiting` wakes the run when the data is there.

The lease itself, and the reclaim of attempts that lost theirs, are :mod:`nectar.leases`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import NamedTuple

import luigi
from luigi.parameter import UnconsumedParameterWarning

from nectar import fence
from nectar.build import Build
from nectar.catalog.loader import describe_import_error, fresh_chain_module
from nectar.catalog.luigi_state import held_to
from nectar.config import Settings, configure
from nectar.errors import ChainImportError, Interrupted, LeaseLost, NectarError, SchedulerUnavailable
from nectar.exposure import exposure
from nectar.leases import AttemptLease, process_name, release
from nectar.logs.format import current_run, process_handlers
from nectar.luigi_internals import program_errors_keep_environment, runs_anyway_anew, stop_mock_filesystem
from nectar.luigid import scheduler_of, scheduler_secret
from nectar.outcomes import (
    blocked_by,
    disabled_by_its_class,
    end_running_steps,
    ran,
    re_enable,
    re_enable_ahead,
    retries_used_up,
    wait,
)
from nectar.params import task_of_text
from nectar.registry import Run, RunState, RunStore
from nectar.registry.model import waited
from nectar.steps import MAX_ERROR, StepRecorder, describe
from nectar.stores import is_permanent
from nectar.task import read_class

logger = logging.getLogger(__name__)
#: the class attribute of a requested task that bounds its attempts' runtime in seconds (0: no limit)
MAX_RUNTIME_ATTRIBUTE = "max_runtime"
#: the class attribute of a requested task that bounds, in seconds, how long its run waits for missing data
WAIT_TIMEOUT_ATTRIBUTE = "wait_timeout"
#: seconds before a WAITING run's first check (:mod:`nectar.waiting` doubles it from there)
FIRST_CHECK = 1.0
#: seconds before a run requeued by its store's full disk is claimed again (a disk is not freed within a second or two:
#: the registry's full disk's Retry-After, ``RegistryFull.retry_after``)
STORE_FULL_RETRY = 5.0

# luigi reads [core] rpc-* itself, then warns at every build that its `core` task does not consume them
warnings.filterwarnings("ignore", r"The configuration contains the parameter 'rpc_\w+'", UnconsumedParameterWarning)


class InvalidMaxRuntime(NectarError, ValueError):
    """A task's ``max_runtime`` (or ``wait_timeout``) is not a number of seconds ≥ 0 (a chain's error: its run
    fails, not retried)."""


def seconds_attribute(task: luigi.Task, name: str, default: float) -> float:
    """``task``'s class's attribute ``name``, a number of seconds ≥ 0, else ``default`` (a luigi parameter so
    named is no such attribute: it is read from the class, not the instance)."""
    value = getattr(type(task), name, None)
    if value is None or isinstance(value, luigi.Parameter):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise InvalidMaxRuntime(f"{type(task).__name__}.{name} must be a number of seconds ≥ 0, not {value!r}")
    return float(value)


def max_runtime(task: luigi.Task, default: float) -> float:
    """Seconds an attempt of ``task``'s run may run (0: no limit): its class's ``max_runtime``, else ``default``."""
    return seconds_attribute(task, MAX_RUNTIME_ATTRIBUTE, default)


def wait_timeout(task: luigi.Task, default: float) -> float:
    """Seconds ``task``'s run may wait for missing data: its class's ``wait_timeout``, else ``default``."""
    return seconds_attribute(task, WAIT_TIMEOUT_ATTRIBUTE, default)


#: the chain files found by :func:`chain_file`, by chains folder, chain type and chain: the paths joined once each
_chain_files: dict[tuple[Path, str, str], Path] = {}
#: most chain files :data:`_chain_files` keeps (forgotten all at once past it)
CHAIN_FILES_KEPT = 1024


def chain_file(settings: Settings, run: Run) -> Path:
    """The chain file of the run's task: joined once per chain (a worker's loop joined it twice per claim, ~10% of
    the loop's Python time, and its attempt once more), then the same path each time."""
    found = (settings.chains_dir, run.chain_type, run.chain)
    path = _chain_files.get(found)
    if path is None:
        if len(_chain_files) >= CHAIN_FILES_KEPT:
            _chain_files.clear()
        path = _chain_files[found] = settings.chains_dir / run.chain_type / f"{run.chain}.py"
    return path


def load_task(settings: Settings, run: Run) -> luigi.Task:
    """The run's luigi task, from the chain file as it is on disk now (executed ahead by this process if it has not
    changed since: :func:`~nectar.catalog.loader.fresh_chain_module`)."""
    path = chain_file(settings, run)
    try:
        module = fresh_chain_module(path, run.chain_type, run.chain)
    except Exception as exc:
        raise ChainImportError(describe_import_error(exc, path)) from exc
    held_to(module.__name__)  # luigi's handlers and options as under python -m luigi --module <it>: before its task
    return task_in(module, run.task, run.params, f"{run.ref} is no longer a task of {path}")


#: the chain module whose exposed tasks this process found last, and those tasks (:func:`exposed_tasks`)
_exposed: tuple[ModuleType, Mapping[str, type[luigi.Task]]] | None = None


def exposed_tasks(module: ModuleType) -> Mapping[str, type[luigi.Task]]:
    """The tasks the chain ``module`` exposes (:func:`~nectar.exposure.exposure`), found once per module: a spare
    rehearses its likely run in the module it executed ahead, then its attempt looks its task up in that same module
    (a walk of the module's names and classes: ~0.3 ms of a trivial run's CPU, each time)."""
    global _exposed
    if _exposed is None or _exposed[0] is not module:
        _exposed = (module, exposure(module).tasks)
    return _exposed[1]


def task_in(module: ModuleType, name: str, params: Mapping[str, str], gone: str) -> luigi.Task:
    """The task ``name`` of the chain ``module`` made from its parameters' text (LookupError ``gone`` if the module
    has no such task)."""
    return task_of_text(task_class(module, name, gone), params)


def task_class(module: ModuleType, name: str, gone: str) -> type[luigi.Task]:
    """The class of the task ``name`` of the chain ``module`` (LookupError ``gone`` if the module has no such task)."""
    cls = vars(module).get(name)
    if cls is None or exposed_tasks(module).get(name) is not cls:
        raise LookupError(gone)
    assert cls is not None
    return cls


#: the tasks (chain file, name) of which this process made a task in a rehearsal (:func:`rehearse`)
_rehearsed: set[tuple[str, str]] = set()


def rehearse(module: ModuleType, name: str, params: Mapping[str, str]) -> None:
    """Set up ahead what an attempt of the task ``name`` of the chain ``module`` will touch to make its task (a spare,
    in the module it executed ahead, with the parameters of the run its worker claimed last): the module's exposed
    tasks found (:func:`exposed_tasks`), its class's parameters and family read (a class made anew reads them as its
    first task is made); and the first time in this process, a task made of ``params``, so that what a making imports
    or sets up once per process is done too. Later, none: the next run's parameters are not known, and a task made of
    the last run's (the attempt makes its own) was ~104,000 instructions of each run's ~7.9 million (callgrind)."""
    cls = task_class(module, name, f"{name} is no task of {module.__name__}")
    rehearsed = (str(module.__file__), name)
    if rehearsed in _rehearsed:
        read_class(cls)
    else:
        task_of_text(cls, params)
        _rehearsed.add(rehearsed)


def commit_guard(runs: RunStore, run: Run, lease: AttemptLease) -> Callable[[str], None]:
    """The attempt's fence: outputs are committed only while it owns its run; logs also once its run is cancelled.

    A cancelled run has no later attempt whose files its logs could overwrite, and the interrupted step's
    logs tell what it was doing; a reclaimed attempt writes nothing (its folder is its successor's).
    """
    fenced = fence.lease_guard(lease.confirm, f"attempt {run.attempt} of run {run.id}")

    def guard(what: str) -> None:
        try:
            fenced(what)
        except LeaseLost:
            if PurePosixPath(what).parent.name != "log" or not _cancelled(runs, run):
                raise

    return guard


def _cancelled(runs: RunStore, run: Run) -> bool:
    """Whether the attempt's run was cancelled (not reclaimed); False when the registry cannot say."""
    try:
        current = runs.get(run.id)
    except Exception:  # the registry is unreachable: the lease's refusal stands
        return False
    return current is not None and current.state == RunState.CANCELLED and current.attempt == run.attempt


class _ExpectedInterrupt(logging.Filter):
    """An interrupted task (its run cancelled or reclaimed, its worker stopping) is no fault: luigi's ``Worker …
    failed`` record with a traceback becomes the one line it is, ``<task> interrupted: <why>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Interrupted):
            task = record.args[-1] if isinstance(record.args, tuple) and record.args else "its task"
            record.msg, record.args = "%s interrupted: %s", (task, exc)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_luigi() -> None:
    """luigi's records once each, and an interrupted task's without a traceback; the process's log at its level.

    luigi gives its logger a handler of its own; in a process that logs through the root's (``nectar
    worker``'s children) each luigi record, a failure's traceback too, was printed twice: luigi's goes.

    luigi's loggers have a level of their own (``[core] log_level``: DEBUG unless luigi.cfg says otherwise), so their
    records below the process log's level (INFO) reached that log, four lines a step, which no other logger's do:
    the process's log now shows records at its level only. A task's log (its stderr while it runs: the process's log
    is set aside meanwhile, :func:`~nectar.logs.capture.redirect_output`) still gets luigi's at luigi's level, as
    luigi would show them.
    """
    root = logging.getLogger()
    luigi_log = logging.getLogger("luigi-interface")
    process_log = process_handlers(root)
    if process_log:
        for handler in list(luigi_log.handlers):
            luigi_log.removeHandler(handler)
    for handler in process_log:
        handler.setLevel(root.level)
    if not any([isinstance(f, _ExpectedInterrupt) for f in luigi_log.filters]):  # (a generator left: an exception)
        luigi_log.addFilter(_ExpectedInterrupt())


class Ending(NamedTuple):
    """How an attempt ended: its run's state (None: the attempt was no longer ours), and whether it ended by its own
    hand (not cancelled, reclaimed, timed out or interrupted): only then may its process take another run."""

    state: RunState | None
    clean: bool


def execute(settings: Settings, runs: RunStore, run: Run, build: Build | None = None) -> RunState | None:
    """Run one attempt, claimed in this process's name, and record its outcome (None: it was no longer ours).

    ``build`` is the attempt's luigi build if it was made ahead (by a spare), else it is made here.
    """
    return attempt(settings, runs, run, build).state


def attempt(settings: Settings, runs: RunStore, run: Run, build: Build | None = None) -> Ending:
    """:func:`execute`, answering how the attempt ended."""
    # first: luigid is asked which of the task's steps it disabled (lifted for a new submission), and answers while
    # the attempt sets itself up, takes its lease and compiles its chain; not asked if its last grant to this process
    # said it held none
    if build is not None:
        re_enable_ahead(build.client, run, build.none_disabled)
    configure(settings)
    current_run.set(run.id)  # every record of this process is now about this run (luigi's too)
    logger.info("run %s of %s: attempt %d of %d started", run.id, run.ref, run.attempt, run.max_attempts)
    lease = AttemptLease(runs, run, settings.heartbeat_interval, settings.max_runtime, settings.lease_timeout)
    fence.install(commit_guard(runs, run, lease))
    try:
        state = _execute(settings, runs, run, lease, build)
    finally:
        fence.install(None)
        stop_mock_filesystem()  # its process would outlive ours (which ends with os._exit), holding what we hold
    outcome = lease.timed_out or (state.value if state is not None else "lost its lease (cancelled or reclaimed)")
    logger.info("run %s of %s: attempt %d ended: %s", run.id, run.ref, run.attempt, outcome)
    return Ending(state, state is not None and not (lease.lost or lease.stopping or lease.timed_out))


def _execute(settings: Settings, runs: RunStore, run: Run, lease: AttemptLease, build: Build | None) -> RunState | None:
    """The attempt itself, under its lease: build the task, then record what came of it."""
    with lease:
        client = build.client if build is not None else None  # it asked luigid ahead (:func:`attempt`)
        try:
            task = load_task(settings, run)
            lease.limit(max_runtime(task, settings.max_runtime))
            patience = wait_timeout(task, settings.wait_timeout)
        except Exception as exc:  # user code failing to import is the run's failure, not ours; no retry cures it
            error = str(exc) if isinstance(exc, ChainImportError) else describe(exc)
            # said where an operator looks, as a task raising in run() is (review23: only "ended: FAILED" at INFO)
            logger.error("run %s of %s: attempt %d cannot load %s: %s", run.id, run.ref, run.attempt, run.ref, error)
            return runs.fail(run.id, run.attempt, run.task, f"cannot load {run.ref}: {error}", retryable=False)
        recorder = StepRecorder(runs, run.id, run.attempt, lease.refused)  # a start written only while it owns the run
        recorder.install()
        lease.on_beat = recorder.flush
        recorder.record(task, "PENDING")
        re_enable(client or scheduler_of(settings), run)  # before luigi adds the task: luigid keeps a disabled task so
        result, blocked, complete = None, None, False
        try:
            build = build or Build(settings.scheduler_url, process_name(), scheduler_secret(settings))
            quiet_luigi()
            program_errors_keep_environment()  # (done once: a worker's attempts have it from their worker)
            runs_anyway_anew()  # luigi's RunAnywayTarget: each run an execution of its pipeline
            result = build.run(task)
            complete = ran(result, task)
            blocked = None if complete or recorder.failed else blocked_by(result, task)
            if blocked is not None and task.complete() is True:  # another worker made it meanwhile: luigi did not
                complete, blocked = True, None
        except Interrupted:
            pass
        except Exception as exc:
            if recorder.failed is None:  # else luigi has told (once) what failed first
                recorder.failed = (run.task, describe(exc), not is_permanent(exc))
                logger.exception("run %s of %s failed", run.id, run.ref)
        if not complete:  # a complete task's last step changes are written with its run's end, in one commit
            _flush(recorder, run)
    done = complete and not (lease.timed_out or lease.lost or lease.stopping)
    if complete and not done:
        _flush(recorder, run)
    if lease.timed_out:  # the run is FAILED: what still runs of it ends, in luigid too (each step's policy with it)
        policies = build.policies() if build is not None else None
        release(runs, run, lease.timed_out, scheduler_of(settings), policies=policies)
        return RunState.FAILED
    if lease.lost:
        return None
    if lease.stopping:
        runs.requeue(run.id, run.attempt)
        requeued = "interrupted: the worker stopped; the run was requeued"
        policies = build.policies() if build is not None else None
        release(runs, run, requeued, scheduler_of(settings), False, policies)  # a requeue is no failure of its steps
        return RunState.PENDING
    if done:
        return RunState.DONE if runs.complete(run.id, run.attempt, recorder.take()) else None
    if recorder.store_full is not None:  # not the task's fault: the run waits in the queue for room, uncounted
        logger.warning(
            "run %s of %s: attempt %d met its store's full disk: %s; requeued, not counted, tried again in %gs",
            *(run.id, run.ref, run.attempt, recorder.store_full, STORE_FULL_RETRY),
        )
        runs.requeue(run.id, run.attempt, STORE_FULL_RETRY, f"requeued: {recorder.store_full}")
        return RunState.PENDING
    if recorder.waiting_for and recorder.failed is None:
        return wait_for_data(runs, run, recorder.waiting_for, patience)
    off = disabled_by_its_class(result, task) if result is not None and recorder.failed is None else None
    if off is not None:  # a class attribute of the chain: no retry or wait changes it
        return runs.fail(run.id, run.attempt, *off, retryable=False)
    scheduler = scheduler_of(settings)
    if blocked:
        return wait(scheduler, runs, run, *blocked)
    if scheduler is not None:
        try:
            scheduler.check()
        except SchedulerUnavailable as exc:  # not the task's fault: wait in the queue for luigid
            runs.requeue(run.id, run.attempt, settings.heartbeat_interval, f"requeued: {exc}")
            return RunState.PENDING
    summary = result.summary_text if result is not None else ""  # made here only: the one reader of it
    step, error, retryable = recorder.failed or (
        run.task,
        f"not complete after the run: {summary.strip()[-MAX_ERROR:]}",
        True,
    )
    used_up = retries_used_up(recorder.failed_tasks, run.attempt, settings.luigi_config) if retryable else None
    if used_up is not None:  # luigid, too, disables that step now: another attempt would wait for nothing
        which, allowed = used_up
        retryable, error = (
            False,
            f"{error}\n(not retried: {which} failed {run.attempt} times, its retry_count is {allowed})",
        )
    recorder.fail_unfinished()  # a step that yielded one which failed names it; end_running_steps names the rest
    state = runs.fail(run.id, run.attempt, step, error[:MAX_ERROR], retryable)
    if state is not None:
        end_running_steps(runs, run, step)
    return state


def _flush(recorder: StepRecorder, run: Run) -> None:
    """Write the steps' last changes; the run's own outcome is recorded even if they are lost."""
    try:
        recorder.flush()
    except Exception:
        logger.exception("could not record the last steps of run %s", run.id)


def wait_for_data(runs: RunStore, run: Run, missing: list[str], patience: float) -> RunState | None:
    """The attempt's task is undone for want of ``missing`` data: its run waits for it, ``patience`` seconds at
    most, holding no process (None: the attempt was no longer ours)."""
    now = time.time()
    shown = missing[0] if len(missing) == 1 else f"{missing[0]} and {len(missing) - 1} more"
    if not runs.wait(run.id, run.attempt, missing, now + patience, now + FIRST_CHECK, f"waiting for {shown}"):
        return None
    logger.info("run %s of %s: waiting for %s, at most %s", run.id, run.ref, ", ".join(missing), waited(patience))
    return RunState.WAITING
