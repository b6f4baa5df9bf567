"""A run's steps in the registry, mirrored from luigi's events about each task of its chain.

A step's start or failure is written at once, other changes in batches; a failure says what the task
raised and whether trying again may cure it (a missing bucket, refused credentials: no).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.event import Event
from luigi.worker import _is_external

from nectar.errors import Interrupted
from nectar.runs import RunStore, Step
from nectar.stores import is_permanent
from nectar.task import log_key

MAX_ERROR = 4000
#: seconds a step's change (other than a start or a failure) may wait to be written with the next ones
FLUSH_INTERVAL = 0.2


def describe(exc: BaseException) -> str:
    """An exception in one line: its type and message, cut at ``MAX_ERROR`` characters."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


@dataclass
class StepRecorder:
    """Mirrors luigi's events about each task of a run into the registry's steps.

    A step's start or failure is written at once; other changes (discovered, done) wait for the next
    write, at most ``FLUSH_INTERVAL`` seconds or until the next heartbeat: a task of a wide chain
    costs one registry write, not three.
    """

    runs: RunStore
    run_id: str
    #: the first step that failed, why, and whether trying again may cure it
    failed: tuple[str, str, bool] | None = None
    _started: set[str] = field(default_factory=set)
    _pending: list[Step] = field(default_factory=list)
    _flushed: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        """Make this the recorder luigi's events reach (handlers are registered once per process)."""
        global _recorder
        if _recorder is None:
            _install_handlers()
        _recorder = self

    def start(self, task: luigi.Task) -> None:
        self._started.add(task.task_id)
        self.record(task, "RUNNING")

    def fail(self, task: luigi.Task, error: str, retryable: bool = True) -> None:
        if self.failed is None:
            self.failed = (type(task).__name__, error, retryable)
        self.record(task, "FAILED", error)

    def raised(self, task: luigi.Task, exc: BaseException, prefix: str = "") -> None:
        """The task (its ``run``, ``requires``, or ``complete``) raised ``exc``."""
        if isinstance(exc, Interrupted):  # whoever interrupted it records its steps: cancel, or release
            return
        self.fail(task, prefix + describe(exc), retryable=not is_permanent(exc))

    def missing(self, task: luigi.Task) -> None:
        """luigi will not run ``task``: it is external and its data is missing, or its ``complete()`` raised."""
        if _is_external(task):
            self.fail(task, "missing: its data does not exist (yet?)")
            return
        try:  # luigi keeps only the text of complete()'s error: ask once more for the error itself
            task.complete()
        except Exception as exc:
            self.raised(task, exc, "complete() failed: ")
        else:
            self.fail(task, "complete() failed, then answered when asked again")

    def record(self, task: luigi.Task, state: str, error: str | None = None) -> None:
        key = getattr(log_key(task), "path", None)  # a plain luigi task's too: its logs are recorded alike
        executed = task.task_id in self._started
        with self._lock:
            self._pending.append(Step(self.run_id, task.task_id, type(task).__name__, key, state, executed, error))
        if state in ("RUNNING", "FAILED") or time.monotonic() - self._flushed >= FLUSH_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Write what is pending, in order (from any thread: the heartbeat's flushes too)."""
        with self._lock:
            if self._pending:
                self.runs.record_steps(self._pending)
                self._pending = []
            self._flushed = time.monotonic()


_recorder: StepRecorder | None = None


def _install_handlers() -> None:
    def forward(action: Any) -> Any:
        """A luigi event handler that passes the event to the current recorder, if any."""
        return lambda *args: action(_recorder, *args) if _recorder is not None else None

    handlers = {
        Event.DEPENDENCY_DISCOVERED: forward(lambda r, task, dep: r.record(dep, "PENDING")),
        Event.DEPENDENCY_PRESENT: forward(lambda r, task: r.record(task, "DONE")),
        Event.DEPENDENCY_MISSING: forward(lambda r, task: r.missing(task)),
        Event.BROKEN_TASK: forward(lambda r, task, exc: r.raised(task, exc, "broken: ")),
        Event.START: forward(lambda r, task: r.start(task)),
        Event.SUCCESS: forward(lambda r, task: r.record(task, "DONE")),
        Event.FAILURE: forward(lambda r, task, exc: r.raised(task, exc)),
    }
    for event, handler in handlers.items():
        luigi.Task.event_handler(event)(handler)
