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
  does not import, a missing bucket) ends the run at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import luigi
from luigi.parameter import UnconsumedParameterWarning

from nectar import fence
from nectar.build import Build, luigi_worker_id
from nectar.config import Settings, configure
from nectar.discovery import describe_import_error, is_chain_task, load_chain_module
from nectar.errors import ChainImportError, Interrupted, LeaseLost, SchedulerUnavailable
from nectar.eventlog import current_run
from nectar.outcomes import blocked_by, end_running_steps, ran, re_enable, retry_allowed, wait
from nectar.registry import Run, RunState, RunStore, Step
from nectar.scheduler import SchedulerClient
from nectar.steps import MAX_ERROR, StepRecorder, describe
from nectar.stores import is_permanent

logger = logging.getLogger(__name__)
#: seconds an interrupted attempt gets to end on its own before its process group is killed
INTERRUPT_GRACE = 5.0
HOST = socket.gethostname()

# luigi reads [core] rpc-* itself, then warns at every build that its `core` task does not consume them
warnings.filterwarnings("ignore", r"The configuration contains the parameter 'rpc_\w+'", UnconsumedParameterWarning)


def process_name(pid: int | None = None) -> str:
    return f"{HOST}:{pid or os.getpid()}"


def scheduler_of(settings: Settings) -> SchedulerClient | None:
    return SchedulerClient(settings.scheduler_url, settings.scheduler_timeout) if settings.scheduler_url else None


def release(settings: Settings, runs: RunStore, run: Run, reason: str) -> None:
    """After ``run``'s attempt died: mark its running steps failed, here and in luigid.

    Of a cancelled run (once its attempt's process has ended), luigid is told that every unfinished
    step is DISABLED with ``reason``: it keeps them so, not retried, until they are submitted again.
    """
    cancelled = run.state == RunState.CANCELLED
    steps = runs.steps(run.id)
    running = [step for step in steps if step.state == "RUNNING"]
    if not cancelled:
        runs.record_steps([Step(run.id, s.task_id, s.task, s.key, "FAILED", s.executed, reason) for s in running])
    scheduler, worker = scheduler_of(settings), luigi_worker_id(run.worker or "?")
    if scheduler is None:
        return
    told = [step for step in steps if step.state != "DONE"] if cancelled else running
    for step in told:
        try:  # luigid would otherwise keep the task RUNNING until it times the dead worker out
            (scheduler.disable if cancelled else scheduler.fail)(step.task_id, worker, reason)
        except SchedulerUnavailable as exc:
            logger.warning("could not tell luigid that %s ended: %s", step.task_id, exc)


def load_task(settings: Settings, run: Run) -> luigi.Task:
    """The run's luigi task, from the chain file as it is on disk now."""
    path = settings.chains_dir / run.chain_type / f"{run.chain}.py"
    try:
        module = load_chain_module(path, run.chain_type, run.chain)
    except Exception as exc:
        raise ChainImportError(describe_import_error(exc, path)) from exc
    cls = vars(module).get(run.task)
    if not is_chain_task(run.task, cls, module):
        raise LookupError(f"{run.ref} is no longer a task of {path}")
    assert cls is not None
    return cls.from_str_params(dict(run.params))


class Lease:
    """The executing process's hold on its attempt, renewed by a heartbeat thread.

    When a renewal is refused, the main thread is interrupted (:class:`Interrupted` is raised in
    it) and, if the attempt has not ended ``INTERRUPT_GRACE`` seconds later, the process group
    is killed: a cancelled or reclaimed attempt never goes on writing. A process that was frozen
    (SIGSTOP) renews at once when it is continued, so it learns first thing that it lost its lease.
    """

    def __init__(self, runs: RunStore, run: Run, interval: float) -> None:
        self.runs, self.run, self.interval = runs, run, interval
        #: the attempt's process: a step forked from it (parallel steps) renews in its name
        self.process = process_name()
        self.lost = False
        self.stopping = False
        #: when the lease was last renewed (monotonic: a frozen process's silence counts); what each beat also does.
        #: A claim is a renewal: an attempt handed over at once (by a spare's parent) starts from it.
        claimed_ago = time.time() - (run.heartbeat_at or 0.0)
        self._renewed = time.monotonic() - claimed_ago if 0 <= claimed_ago < interval / 2 else float("-inf")
        self.on_beat: Callable[[], None] | None = None
        self._ended = threading.Event()
        self._wake = threading.Event()
        self._signals = threading.current_thread() is threading.main_thread()

    def renew(self) -> bool:
        began = time.monotonic()
        if not self.lost and not self.runs.heartbeat(self.run.id, self.run.attempt, self.process):
            self.lost = True
        if not self.lost:
            self._renewed = began
        return not self.lost

    def confirm(self) -> bool:
        """Whether the attempt may commit an output now (the fence's question).

        Within a heartbeat interval of the last renewal, the lease cannot have run out, so a read
        that finds the attempt still RUNNING (not cancelled, not reclaimed) is enough; after a longer
        silence (the process was frozen, or the registry slow) the lease is renewed first.
        """
        if self.lost or time.monotonic() - self._renewed >= self.interval:
            return self.renew()
        if not self.runs.owns(self.run.id, self.run.attempt):
            self.lost = True
        return not self.lost

    def __enter__(self) -> Lease:
        if self._signals:
            signal.signal(signal.SIGUSR2, self._raise)  # not SIGUSR1: luigi's worker takes that one
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGCONT, lambda *_: self._wake.set())
        threading.Thread(target=self._beat, name="nectar-heartbeat", daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._ended.set()
        self._wake.set()
        if self._signals:  # a late interrupt must not kill a process that has finished its attempt
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCONT, signal.SIG_DFL)

    def _raise(self, *_: Any) -> None:
        raise Interrupted("the worker is stopping" if self.stopping else "the run was cancelled or reclaimed")

    def _stop(self, *_: Any) -> None:
        self.stopping = True
        self._raise()

    def _beat(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._ended.is_set():
                return
            try:
                if self.on_beat is not None:
                    self.on_beat()
                if self.renew():
                    continue
            except Exception:  # the registry is briefly unusable: the lease may still be ours
                logger.exception("heartbeat of run %s failed", self.run.id, extra={"run_id": self.run.id})
                continue
            about = {"run_id": self.run.id}  # this thread does not share the main thread's context
            logger.warning("run %s lost its lease (cancelled or reclaimed): stopping it", self.run.id, extra=about)
            if self._signals:
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)
            if not self._ended.wait(INTERRUPT_GRACE) and os.getpgid(0) == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            return


def commit_guard(runs: RunStore, run: Run, lease: Lease) -> Callable[[str], None]:
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
    """luigi's records once each (at luigi.cfg's level), and an interrupted task's without a traceback.

    luigi gives its logger a handler of its own; in a process that logs through the root's (``nectar
    worker``'s children) each luigi record, a failure's traceback too, was printed twice: luigi's goes.
    """
    luigi_log = logging.getLogger("luigi-interface")
    if any(getattr(handler, "_nectar", False) for handler in logging.getLogger().handlers):
        for handler in list(luigi_log.handlers):
            luigi_log.removeHandler(handler)
    if not any(isinstance(f, _ExpectedInterrupt) for f in luigi_log.filters):
        luigi_log.addFilter(_ExpectedInterrupt())


def execute(settings: Settings, runs: RunStore, run: Run, build: Build | None = None) -> RunState | None:
    """Run one attempt, claimed in this process's name, and record its outcome (None: it was no longer ours).

    ``build`` is the attempt's luigi build if it was made ahead (by a spare), else it is made here.
    """
    configure(settings)
    current_run.set(run.id)  # every record of this process is now about this run (luigi's too)
    logger.info("run %s of %s: attempt %d of %d started", run.id, run.ref, run.attempt, run.max_attempts)
    lease = Lease(runs, run, settings.heartbeat_interval)
    fence.install(commit_guard(runs, run, lease))
    try:
        state = _execute(settings, runs, run, lease, build)
    finally:
        fence.install(None)
    outcome = state.value if state is not None else "lost its lease (cancelled or reclaimed)"
    logger.info("run %s of %s: attempt %d ended: %s", run.id, run.ref, run.attempt, outcome)
    return state


def _execute(settings: Settings, runs: RunStore, run: Run, lease: Lease, build: Build | None) -> RunState | None:
    """The attempt itself, under its lease: build the task, then record what came of it."""
    with lease:
        try:
            task = load_task(settings, run)
        except Exception as exc:  # user code failing to import is the run's failure, not ours; no retry cures it
            error = str(exc) if isinstance(exc, ChainImportError) else describe(exc)
            return runs.fail(run.id, run.attempt, run.task, f"cannot load {run.ref}: {error}", retryable=False)
        recorder = StepRecorder(runs, run.id)
        recorder.install()
        lease.on_beat = recorder.flush
        recorder.record(task, "PENDING")
        re_enable(scheduler_of(settings), run)
        summary, blocked, complete = "", None, False
        try:
            build = build or Build(settings.scheduler_url, process_name())
            quiet_luigi()
            result = build.run(task)
            summary = result.summary_text
            complete = ran(result, task) or task.complete() is True
            blocked = None if complete or recorder.failed else blocked_by(result, task)
        except Interrupted:
            pass
        except Exception as exc:
            if recorder.failed is None:  # else luigi has told (once) what failed first
                recorder.failed = (run.task, describe(exc), not is_permanent(exc))
                logger.exception("run %s of %s failed", run.id, run.ref)
        try:
            recorder.flush()
        except Exception:  # the steps' last changes are lost; the run's own outcome is recorded below
            logger.exception("could not record the last steps of run %s", run.id)
    if lease.lost:
        return None
    if lease.stopping:
        runs.requeue(run.id, run.attempt)
        release(settings, runs, run, "interrupted: the worker stopped; the run was requeued")
        return RunState.PENDING
    if complete:
        return RunState.DONE if runs.complete(run.id, run.attempt) else None
    scheduler = scheduler_of(settings)
    if blocked:
        return wait(scheduler, runs, run, *blocked)
    if scheduler is not None:
        try:
            scheduler.check()
        except SchedulerUnavailable as exc:  # not the task's fault: wait in the queue for luigid
            runs.requeue(run.id, run.attempt, settings.heartbeat_interval, f"requeued: {exc}")
            return RunState.PENDING
    step, error, retryable = recorder.failed or (
        run.task,
        f"not complete after the run: {summary.strip()[-MAX_ERROR:]}",
        True,
    )
    allowed = retry_allowed(recorder.failed_task, run.attempt) if retryable else None
    if allowed is not None:  # luigid, too, disables the step now: another attempt would wait for nothing
        retryable, error = (
            False,
            f"{error}\n(not retried: {step} failed {run.attempt} times, its retry_count is {allowed})",
        )
    state = runs.fail(run.id, run.attempt, step, error[:MAX_ERROR], retryable)
    if state is not None:
        end_running_steps(runs, run, step)
    return state
