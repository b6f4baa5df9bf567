"""Workers: claim queued runs from the registry and execute each in a fresh child process.

The parent (``nectar worker``) imports luigi, boto3 and nectar once and never imports chain
code; each attempt forks a child, in its own process group, that compiles the chain file as it
is on disk *now* (a fixed chain takes effect on the next run without a restart) and runs
``luigi.build`` against the central scheduler (or luigi's local one). Each step's state goes to
the registry through luigi's events; the attempt's outcome is whether its task is complete.

Nothing is lost and nothing runs twice at once:

- the child renews its attempt's lease (a heartbeat) every ``heartbeat_interval``; when the
  renewal is refused (the run was cancelled, or presumed lost and reclaimed) the child
  interrupts its task and, if that does not end it, kills its process group;
- whatever the heartbeat has not yet seen, every commit of an output renews the lease first
  and is discarded if that is refused (:mod:`nectar.fence`): a lost attempt writes nothing;
- every worker reclaims attempts whose lease ran out (or, on its own host, whose process is
  gone), retrying them per their policy, and tells luigid the dead attempt's task failed so the
  retry need not wait for luigid to time the old worker out;
- a stopping worker stops claiming, lets running attempts finish for ``drain_grace`` seconds,
  then interrupts them and puts them back in the queue, uncounted;
- no run is claimed while luigid is unreachable: the queue waits for it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import luigi
import luigi.contrib.s3  # noqa: F401  (warm: children fork with it imported)
from luigi.event import Event
from luigi.execution_summary import _summary_dict

from nectar import fence
from nectar.config import Settings, configure
from nectar.discovery import is_chain_task, load_chain_module
from nectar.errors import RegistryUnavailable, SchedulerUnavailable
from nectar.eventlog import current_run
from nectar.runs import Run, RunState, RunStore, Step, open_run_store
from nectar.scheduler import SchedulerClient, WorkerSchedulerFactory
from nectar.task import NectarTask

logger = logging.getLogger(__name__)
MAX_ERROR = 4000
#: seconds an interrupted attempt gets to end on its own before its process group is killed
INTERRUPT_GRACE = 5.0
#: seconds a run waits before trying again when a step it needs is being run by another worker
BLOCKED_DELAY = 2.0
#: seconds between two looks for finished attempts while some run
REAP_INTERVAL = 0.05
HOST = socket.gethostname()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def process_name(pid: int | None = None) -> str:
    return f"{HOST}:{pid or os.getpid()}"


def luigi_worker_id(run: Run) -> str:
    """The luigi worker id of one attempt, so that luigid can be told when that attempt died."""
    return f"nectar-{run.id}-{run.attempt}"


def scheduler_options(settings: Settings) -> dict[str, Any]:
    if settings.scheduler_url:
        return {"scheduler_url": settings.scheduler_url}
    return {"local_scheduler": True}


def scheduler_of(settings: Settings) -> SchedulerClient | None:
    return SchedulerClient(settings.scheduler_url, settings.scheduler_timeout) if settings.scheduler_url else None


def is_dead(worker: str) -> bool:
    """Whether ``host:pid`` names a process of this host that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release(settings: Settings, runs: RunStore, run: Run, reason: str) -> None:
    """After ``run``'s attempt died: mark its running steps failed, here and in luigid."""
    scheduler = scheduler_of(settings)
    for step in runs.steps(run.id):
        if step.state != "RUNNING":
            continue
        runs.record_step(Step(run.id, step.task_id, step.task, step.key, "FAILED", step.executed, reason))
        if scheduler is None:
            continue
        try:  # luigid would otherwise keep the task RUNNING until it times the dead worker out
            scheduler.call("add_task", task_id=step.task_id, status="FAILED", worker=luigi_worker_id(run), expl=reason)
        except SchedulerUnavailable as exc:
            logger.warning("could not tell luigid that %s failed: %s", step.task_id, exc)


@dataclass
class StepRecorder:
    """Mirrors luigi's events about each task of a run into the registry's steps."""

    runs: RunStore
    run_id: str
    failed: tuple[str, str] | None = None
    _started: set[str] = field(default_factory=set)

    def install(self) -> None:
        """Make this the recorder luigi's events reach (handlers are registered once per process)."""
        global _recorder
        if _recorder is None:
            _install_handlers()
        _recorder = self

    def start(self, task: luigi.Task) -> None:
        self._started.add(task.task_id)
        self.record(task, "RUNNING")

    def fail(self, task: luigi.Task, error: str) -> None:
        if self.failed is None:
            self.failed = (type(task).__name__, error)
        self.record(task, "FAILED", error)

    def record(self, task: luigi.Task, state: str, error: str | None = None) -> None:
        key = task.target_key.path if isinstance(task, NectarTask) else None
        self.runs.record_step(
            Step(self.run_id, task.task_id, type(task).__name__, key, state, task.task_id in self._started, error)
        )


_recorder: StepRecorder | None = None


def _install_handlers() -> None:
    def forward(action: Any) -> Any:
        """A luigi event handler that passes the event to the current recorder, if any."""
        return lambda *args: action(_recorder, *args) if _recorder is not None else None

    handlers = {
        Event.DEPENDENCY_DISCOVERED: forward(lambda r, task, dep: r.record(dep, "PENDING")),
        Event.DEPENDENCY_PRESENT: forward(lambda r, task: r.record(task, "DONE")),
        Event.DEPENDENCY_MISSING: forward(lambda r, task: r.fail(task, "missing: its data does not exist (yet?)")),
        Event.BROKEN_TASK: forward(lambda r, task, exc: r.fail(task, f"broken: {_describe(exc)}")),
        Event.START: forward(lambda r, task: r.start(task)),
        Event.SUCCESS: forward(lambda r, task: r.record(task, "DONE")),
        Event.FAILURE: forward(lambda r, task, exc: r.fail(task, _describe(exc))),
    }
    for event, handler in handlers.items():
        luigi.Task.event_handler(event)(handler)


def load_task(settings: Settings, run: Run) -> luigi.Task:
    """The run's luigi task, from the chain file as it is on disk now."""
    path = settings.chains_dir / run.chain_type / f"{run.chain}.py"
    module = load_chain_module(path, run.chain_type, run.chain)
    cls = vars(module).get(run.task)
    if not is_chain_task(run.task, cls, module):
        raise LookupError(f"{run.ref} is no longer a task of {path}")
    assert cls is not None
    return cls.from_str_params(dict(run.params))


class Interrupted(BaseException):  # noqa: N818  (like KeyboardInterrupt: what happened to the task, not its fault)
    """Raised inside an attempt's process to stop its task (a BaseException, so task code does not swallow it)."""


class Lease:
    """The executing process's hold on its attempt, renewed by a heartbeat thread.

    When a renewal is refused, the main thread is interrupted (:class:`Interrupted` is raised in
    it) and, if the attempt has not ended ``INTERRUPT_GRACE`` seconds later, the process group
    is killed: a cancelled or reclaimed attempt never goes on writing. A process that was frozen
    (SIGSTOP) renews at once when it is continued, so it learns first thing that it lost its lease.
    """

    def __init__(self, runs: RunStore, run: Run, interval: float) -> None:
        self.runs, self.run, self.interval = runs, run, interval
        self.lost = False
        self.stopping = False
        self._ended = threading.Event()
        self._wake = threading.Event()
        self._signals = threading.current_thread() is threading.main_thread()

    def renew(self) -> bool:
        if not self.lost and not self.runs.heartbeat(self.run.id, self.run.attempt, process_name()):
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


#: why luigi may leave a task undone with no step failing, and what the run then says while it waits
_WAITING = {
    "run_by_other_worker": "another worker is running it",
    "upstream_run_by_other_worker": "another worker is running a step it needs",
    "not_run": "luigid did not grant it (paused, short of resources, or restarted)",
}


def _blocked(result: Any, task: luigi.Task) -> str | None:
    """Why luigi left the task undone though no step failed, if it did; None if it did not."""
    tasks = _summary_dict(result.worker)
    return next((f"waiting: {why}" for kind, why in _WAITING.items() if task in tasks[kind]), None)


def execute(settings: Settings, runs: RunStore, run: Run) -> RunState | None:
    """Run one claimed attempt in this process and record its outcome (None: it was no longer ours)."""
    configure(settings)
    current_run.set(run.id)  # every record of this process is now about this run (luigi's too)
    logger.info("run %s of %s: attempt %d of %d started", run.id, run.ref, run.attempt, run.max_attempts)
    lease = Lease(runs, run, settings.heartbeat_interval)
    if not lease.renew():
        return None
    config = luigi.configuration.get_config()
    if not config.has_section("worker"):
        config.add_section("worker")
    config.set("worker", "id", luigi_worker_id(run))
    fence.install(fence.lease_guard(lease.renew, f"attempt {run.attempt} of run {run.id}"))
    try:
        state = _execute(settings, runs, run, lease)
    finally:
        fence.install(None)
    outcome = state.value if state is not None else "lost its lease (cancelled or reclaimed)"
    logger.info("run %s of %s: attempt %d ended: %s", run.id, run.ref, run.attempt, outcome)
    return state


def _execute(settings: Settings, runs: RunStore, run: Run, lease: Lease) -> RunState | None:
    """The attempt itself, under its lease: build the task, then record what came of it."""
    with lease:
        try:
            task = load_task(settings, run)
        except Exception as exc:  # user code failing to import is the run's failure, not ours
            return runs.fail(run.id, run.attempt, run.task, f"cannot load {run.ref}: {_describe(exc)}")
        recorder = StepRecorder(runs, run.id)
        recorder.install()
        recorder.record(task, "PENDING")
        summary, blocked, complete = "", None, False
        try:
            result = luigi.build(
                [task], WorkerSchedulerFactory(), detailed_summary=True, workers=1, **scheduler_options(settings)
            )
            summary = result.summary_text
            complete = bool(task.complete())
            blocked = None if complete or recorder.failed else _blocked(result, task)
        except Interrupted:
            pass
        except Exception as exc:
            recorder.failed = recorder.failed or (run.task, _describe(exc))
            traceback.print_exc()
    if lease.lost:
        return None
    if lease.stopping:
        runs.requeue(run.id, run.attempt)
        release(settings, runs, run, "interrupted: the worker stopped; the run was requeued")
        return RunState.PENDING
    if complete:
        return RunState.DONE if runs.complete(run.id, run.attempt) else None
    if blocked:
        runs.requeue(run.id, run.attempt, BLOCKED_DELAY, blocked)
        return RunState.PENDING
    scheduler = scheduler_of(settings)
    if scheduler is not None:
        try:
            scheduler.check()
        except SchedulerUnavailable as exc:  # not the task's fault: wait in the queue for luigid
            runs.requeue(run.id, run.attempt, settings.heartbeat_interval, f"requeued: {exc}")
            return RunState.PENDING
    step, error = recorder.failed or (run.task, f"not complete after the run: {summary.strip()[-MAX_ERROR:]}")
    return runs.fail(run.id, run.attempt, step, error)


def run_in_foreground(settings: Settings, runs: RunStore, run_id: str, worker: str) -> None:
    """Execute a run here, attempt after attempt (waiting out retry delays), until it ends or leaves us."""
    while True:
        run = runs.claim(worker, run_id=run_id)
        if run is None:
            current = runs.get(run_id)
            if current is None or current.state != RunState.PENDING:
                return
            time.sleep(max(0.0, current.not_before - time.time()) + 0.01)
            continue
        execute(settings, runs, run)


@dataclass
class Child:
    run: Run
    #: when the parent saw the attempt was no longer the child's (cancelled or reclaimed)
    disowned_at: float | None = None


class Executor:
    """Claims PENDING runs and executes up to ``concurrency`` of them at once, one child each."""

    def __init__(self, settings: Settings, concurrency: int = 1, runs: RunStore | None = None) -> None:
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.runs = runs or open_run_store(settings)
        self.scheduler = scheduler_of(settings)
        self.name = process_name()
        self.children: dict[int, Child] = {}
        self._stopping: float | None = None  # when the drain ends
        self._watched = 0.0
        self._scheduler_seen: tuple[float, bool] = (0.0, True)

    def stop(self, *_: Any) -> None:
        """First call: drain (stop claiming, let attempts finish for ``drain_grace``). Second: interrupt now."""
        now = time.monotonic()
        self._stopping = now + self.settings.drain_grace if self._stopping is None else now

    @property
    def stopping(self) -> bool:
        return self._stopping is not None

    def _spawn(self, run: Run) -> None:
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.setpgid(0, 0)  # its own group: cancelling kills the task's subprocesses too
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = 0 if execute(self.settings, self.runs, run) == RunState.DONE else 2
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self.children[pid] = Child(run)

    def _owned(self, run: Run) -> bool:
        current = self.runs.get(run.id)
        return current is not None and current.state == RunState.RUNNING and current.attempt == run.attempt

    def _reap(self, block: bool = False) -> None:
        for pid, child in list(self.children.items()):
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
            if done == 0:
                continue
            del self.children[pid]
            run = child.run
            if not self._owned(run):  # the child recorded its outcome, or the attempt was taken from it
                continue
            if self.stopping:
                self.runs.requeue(run.id, run.attempt)
                reason = "interrupted: the worker stopped; the run was requeued"
                logger.warning(
                    "run %s of %s requeued: its worker was stopped", run.id, run.ref, extra={"run_id": run.id}
                )
            else:
                how = (
                    f"killed by signal {os.WTERMSIG(status)}"
                    if os.WIFSIGNALED(status)
                    else f"exited with code {os.WEXITSTATUS(status)}"
                )
                reason = f"worker process {how} during attempt {run.attempt}"
                self.runs.fail(run.id, run.attempt, run.task, reason)
            release(self.settings, self.runs, run, reason)

    def _watch(self) -> None:
        """Reclaim lost attempts (anyone's) and kill children whose attempt is no longer theirs."""
        now = time.monotonic()
        if now - self._watched < self.settings.heartbeat_interval:
            return
        self._watched = now
        for run in self.runs.reclaim(self.settings.lease_timeout, dead=is_dead):
            logger.warning(
                "run %s of %s: attempt %d lost (worker %s)",
                *(run.id, run.ref, run.attempt, run.worker),
                extra={"run_id": run.id},
            )
            release(self.settings, self.runs, run, f"worker lost: {run.worker}")
        for pid, child in self.children.items():
            if child.disowned_at is None and not self._owned(child.run):
                child.disowned_at = now
            elif child.disowned_at is not None and now - child.disowned_at > INTERRUPT_GRACE:
                self._kill(pid, signal.SIGKILL)

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _scheduler_up(self) -> bool:
        """Whether luigid answers (asked at most once per heartbeat interval); runs wait while it does not."""
        if self.scheduler is None:
            return True
        seen, up = self._scheduler_seen
        if time.monotonic() - seen < self.settings.heartbeat_interval:
            return up
        try:
            self.scheduler.check()
            now_up = True
        except SchedulerUnavailable as exc:
            now_up = False
            if up:
                logger.warning("not claiming runs until luigid answers again: %s", exc)
        if now_up and not up:
            logger.warning("luigid answers again: claiming runs")
        self._scheduler_seen = (time.monotonic(), now_up)
        return now_up

    def _registry_answers(self) -> bool:
        try:
            self.runs.check()
        except Exception:  # any failure of the probe means: not yet
            return False
        return True

    def _serve_once(self) -> None:
        """Reap, watch, claim what the free slots can take, then wait a little for more work."""
        self._reap()
        self._watch()
        while len(self.children) < self.concurrency and not self.stopping and self._scheduler_up():
            run = self.runs.claim(self.name)
            if run is None:
                break
            self._spawn(run)
            logger.info("run %s of %s: attempt %d claimed", run.id, run.ref, run.attempt, extra={"run_id": run.id})
        # while attempts run, look often (a finished one frees its slot); idle, wait to be woken (or poll)
        idle = self.settings.worker_poll_interval
        self.runs.wait_for_work(min(idle, REAP_INTERVAL) if self.children else idle)

    def serve_forever(self) -> None:
        """Claim and execute runs until SIGTERM or SIGINT; then drain, interrupt and requeue."""
        if self.settings.luigi_config:
            luigi.configuration.add_config_path(str(self.settings.luigi_config))
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        logger.info("worker %s: %d slot(s), registry %s", self.name, self.concurrency, self.settings.registry_location)
        registry_down = False
        while self._stopping is None or (self.children and time.monotonic() < self._stopping):
            try:
                self._serve_once()
            except RegistryUnavailable as exc:  # PostgreSQL restarting: what was not recorded, leases recover
                if not registry_down:
                    logger.warning("the run registry is unavailable, retrying: %s", exc)
                registry_down = True
                time.sleep(max(self.settings.worker_poll_interval, 0.5))
                continue
            if registry_down and self._registry_answers():
                logger.warning("the run registry answers again")
                registry_down = False
        for pid in self.children:  # the drain is over: interrupt what still runs (it requeues itself)
            self._kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + INTERRUPT_GRACE
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(self.settings.worker_poll_interval)
        for pid in self.children:
            self._kill(pid, signal.SIGKILL)
        self._reap(block=True)
