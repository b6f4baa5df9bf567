"""Workers: claim queued runs from the registry and execute each in a fresh child process.

The parent (``nectar worker``) imports luigi, boto3 and nectar once and never imports chain
code; each run forks a child that compiles the chain file as it is on disk *now*, so a fixed
chain takes effect on the next run without a restart, then runs ``luigi.build`` against the
central scheduler (or luigi's local one). Each step's state goes to the registry through
luigi's events; the run's outcome is whether its task is complete afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import luigi
import luigi.contrib.s3  # noqa: F401  (warm: children fork with it imported)
from luigi.event import Event

from nectar.config import Settings, configure
from nectar.discovery import is_chain_task, load_chain_module
from nectar.runs import Run, RunState, RunStore, Step, open_run_store
from nectar.task import NectarTask

logger = logging.getLogger(__name__)
MAX_ERROR = 4000


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def scheduler_options(settings: Settings) -> dict[str, Any]:
    if settings.scheduler_url:
        return {"scheduler_url": settings.scheduler_url}
    return {"local_scheduler": True}


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


def execute(settings: Settings, runs: RunStore, run: Run) -> RunState:
    """Run one claimed run in this process and record its outcome."""
    configure(settings)
    try:
        task = load_task(settings, run)
    except Exception as exc:  # user code failing to import is the run's failure, not ours
        runs.finish(run.id, RunState.FAILED, failed_step=run.task, error=f"cannot load {run.ref}: {_describe(exc)}")
        return RunState.FAILED
    recorder = StepRecorder(runs, run.id)
    recorder.install()
    recorder.record(task, "PENDING")
    summary = ""
    try:
        result = luigi.build([task], detailed_summary=True, workers=1, **scheduler_options(settings))
        summary = result.summary_text
        complete = bool(task.complete())
    except Exception as exc:
        complete = False
        recorder.failed = recorder.failed or (run.task, _describe(exc))
        traceback.print_exc()
    if complete:
        runs.finish(run.id, RunState.DONE)
        return RunState.DONE
    step, error = recorder.failed or (run.task, f"not complete after the run: {summary.strip()[-MAX_ERROR:]}")
    runs.finish(run.id, RunState.FAILED, failed_step=step, error=error)
    return RunState.FAILED


class Executor:
    """Claims PENDING runs and executes up to ``concurrency`` of them at once, one child each."""

    def __init__(self, settings: Settings, concurrency: int = 1, runs: RunStore | None = None) -> None:
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.runs = runs or open_run_store(settings.registry_path)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.children: dict[int, Run] = {}
        self._stopping = False

    def stop(self, *_: Any) -> None:
        self._stopping = True

    def _spawn(self, run: Run) -> None:
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = 0 if execute(self.settings, self.runs, run) == RunState.DONE else 2
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self.children[pid] = run

    def _reap(self, block: bool = False) -> None:
        for pid, run in list(self.children.items()):
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
            if done == 0:
                continue
            del self.children[pid]
            current = self.runs.get(run.id)
            if current is None or not current.state.active:
                continue
            if self._stopping:
                self.runs.requeue(run.id)
                logger.warning("run %s of %s requeued: its worker was stopped", run.id, run.ref)
            else:
                reason = (
                    f"killed by signal {os.WTERMSIG(status)}"
                    if os.WIFSIGNALED(status)
                    else f"exited with code {os.WEXITSTATUS(status)}"
                )
                self.runs.finish(run.id, RunState.FAILED, failed_step=run.task, error=f"worker process {reason}")

    def serve_forever(self) -> None:
        """Claim and execute runs until SIGTERM or SIGINT; then stop children and requeue their runs."""
        if self.settings.luigi_config:
            luigi.configuration.add_config_path(str(self.settings.luigi_config))
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        logger.info("worker %s: %d slot(s), registry %s", self.name, self.concurrency, self.settings.registry_path)
        while not self._stopping:
            self._reap()
            while len(self.children) < self.concurrency and not self._stopping:
                run = self.runs.claim(self.name)
                if run is None:
                    break
                self._spawn(run)
            time.sleep(self.settings.worker_poll_interval)
        for pid in self.children:
            os.kill(pid, signal.SIGTERM)
        self._reap(block=True)
