"""A run's steps in the registry, mirrored from luigi's events about each task of its chain.

A step's start or failure is written at once, other changes in batches; a failure says what the task
raised and whether trying again may cure it (a missing bucket, refused credentials: no). What luigi calls
"failed scheduling" (a ``complete()`` or ``requires()`` that raises) is told with its traceback and is never
retried: no retry cures code that raises. An external task whose data is missing is waited for (the run
goes WAITING, :mod:`nectar.waiting`) when every missing output has a path a worker can check, else fails.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.event import Event
from luigi.target import FileSystemTarget
from luigi.task import flatten

from nectar.errors import Interrupted, LeaseLost, Unavailable
from nectar.luigi_internals import CompleteError, complete_error, is_external, task_ident, uncounted, yielded
from nectar.registry import RunStore, Step
from nectar.stores import is_permanent
from nectar.task import log_key, on_start, open_live_logs, store_disk_full

MAX_ERROR = 4000
#: seconds a step's change (other than a start or a failure) may wait to be written with the next ones
FLUSH_INTERVAL = 0.2


def describe(exc: BaseException) -> str:
    """An exception in one line: its type and message, cut at ``MAX_ERROR`` characters."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def with_traceback(exc: BaseException, prefix: str = "") -> str:
    """An exception in one line, then its traceback: the traceback's end kept when it is too long."""
    return traced(prefix + describe(exc), "".join(traceback.format_exception(exc)))


def traced(head: str, trace: str) -> str:
    """``head`` (one line), then the traceback ``trace``: its end kept when it is too long."""
    trace = trace.rstrip()
    room = MAX_ERROR - len(head) - 1
    return f"{head}\n{trace[-room:]}" if room > 0 else head[:MAX_ERROR]


def missing_outputs(task: luigi.Task) -> str:
    """The outputs of ``task`` that do not exist, by path (or as luigi shows them), comma separated."""
    absent = []
    for target in flatten(task.output()):
        try:
            present = target.exists()
        except Exception:  # a store that cannot say counts as missing: the name is what is told
            present = False
        if not present:
            absent.append(str(getattr(target, "path", target)))
    return ", ".join(absent) or "its output"


#: the schemes of an S3 target's path (luigi's ``S3Target`` takes each), written ``s3://`` when waited for
S3_SCHEMES = ("s3://", "s3a://", "s3n://")


def wait_uri(target: Any) -> str:
    """What a worker checks to know ``target`` exists: a local file's absolute path, an S3 object's
    ``s3://bucket/key``; :class:`ValueError` saying why for any other target (it cannot be waited for)."""
    path = getattr(target, "path", None)
    if isinstance(target, luigi.LocalTarget) and isinstance(path, str):
        return os.path.abspath(path)
    if isinstance(target, FileSystemTarget) and isinstance(path, str) and path.startswith(S3_SCHEMES):
        return "s3://" + path.split("://", 1)[1]
    raise ValueError(f"a {type(target).__name__} is neither a local file nor an S3 object")


def missing_uris(task: luigi.Task) -> list[str]:
    """What to wait for: the URIs of ``task``'s outputs that do not exist; :class:`ValueError` if one cannot be
    waited for (a store that cannot say whether it exists counts as missing)."""
    absent = []
    for target in flatten(task.output()):
        try:
            present = target.exists()
        except Exception:
            present = False
        if not present:
            absent.append(wait_uri(target))
    if not absent:
        raise NothingMissing("it names no missing output")
    return absent


class NothingMissing(ValueError):
    """An external task luigi finds incomplete names no output that is missing: nothing to wait for."""


def nothing_missing(task: luigi.Task) -> str:
    """Why luigi finds the external ``task`` incomplete though no output it names is missing, as luigi says it: with
    luigi's own ``complete()``, a task that names no output is never complete (luigi warns so as it asks, and, the
    task being external, never runs it); else its own ``complete()`` answered False."""
    if type(task).complete is luigi.Task.complete and not flatten(task.output()):
        return (
            f"{task} names no output and has no complete() of its own, so luigi never finds it complete (luigi: "
            f'"Task {task!r} without outputs has no custom complete() method"), and an external task is never run'
        )
    return f"{task}'s complete() answered False, and no output it names is missing: nothing to wait for"


@dataclass
class StepRecorder:
    """Mirrors luigi's events about each task of a run into the registry's steps.

    A step's start or failure is written at once; other changes (discovered, done) wait for the next
    write, at most ``FLUSH_INTERVAL`` seconds or until the next heartbeat: a task of a wide chain
    costs one registry write, not three.

    With ``attempt`` (the attempt that runs the steps), every change is written only while that attempt owns its
    run: the write is the fence's question too. Refused, nothing more is written (the run is another attempt's, or
    cancelled: its steps are no longer this one's to tell) and ``on_lost`` is called (the lease stops the attempt).
    """

    runs: RunStore
    run_id: str
    #: the attempt whose steps these are (None: steps written as the registry writes any)
    attempt: int | None = None
    #: called once when a write finds that ``attempt`` no longer owns its run
    on_lost: Callable[[], None] | None = None
    #: a write found that ``attempt`` no longer owns its run: nothing more is written
    lost: bool = False
    #: the first step that failed, why, and whether trying again may cure it
    failed: tuple[str, str, bool] | None = None
    #: the task of that step
    failed_task: luigi.Task | None = None
    #: every task that failed in this attempt, in the order they did (the first is ``failed_task``)
    failed_tasks: list[luigi.Task] = field(default_factory=list)
    #: what the run waits for: the missing outputs (URIs, absolute paths) of external tasks, in the order met
    waiting_for: list[str] = field(default_factory=list)
    #: a step met its store's full disk (what the store says of it): an outage, the attempt requeued uncounted
    store_full: str | None = None
    _started: set[str] = field(default_factory=set)
    #: the tasks started whose last state noted is RUNNING, by task id
    _running: dict[str, luigi.Task] = field(default_factory=dict)
    _pending: list[Step] = field(default_factory=list)
    #: where each task's change waits in ``_pending``
    _places: dict[str, int] = field(default_factory=dict)
    _flushed: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        """Make this the recorder luigi's events reach (handlers are registered once per process)."""
        global _recorder
        if _recorder is None:
            _install_handlers()
        _recorder = self

    def start(self, task: luigi.Task) -> None:
        key = log_key(task)
        if key is not None:  # before the step is told RUNNING: its log URLs answer from that moment on
            open_live_logs(key)
        self._started.add(task.task_id)
        self._running[task.task_id] = task
        self.record(task, "RUNNING")

    def fail_unfinished(self) -> None:
        """Fail each step this attempt left running that yielded a step which failed (luigi's worker ends with the
        yielding step unfinished), naming that step; one whose yielded steps did not fail is left to
        :func:`~nectar.outcomes.end_running_steps`, which names the run's failed step."""
        failed = {task_ident(task): type(task).__name__ for task in self.failed_tasks}
        for task in list(self._running.values()):
            cause = next((failed[ident] for ident in sorted(yielded(task.task_id)) if ident in failed), None)
            if cause is not None:
                self.record(task, "FAILED", f"not finished: {cause} failed")

    def fail(self, task: luigi.Task, error: str, retryable: bool = True) -> None:
        if self.failed is None:
            self.failed, self.failed_task = (type(task).__name__, error, retryable), task
        self.failed_tasks.append(task)
        self.record(task, "FAILED", error)

    def raised(self, task: luigi.Task, exc: BaseException, prefix: str = "") -> None:
        """The task (its ``run``, ``requires``, or ``complete``) raised ``exc``."""
        if isinstance(exc, Interrupted | LeaseLost):  # the run is no longer the attempt's: whoever took it (a cancel, a
            uncounted(task)  # reclaim) tells luigid how the step ended, and counts it or not
        if isinstance(exc, Interrupted):  # and records its steps
            return
        full = store_disk_full(task, exc)
        if full is not None:  # its store's disk, not the task: luigid counts it not, the attempt waits for room
            uncounted(task)
            self.store_full = full
        self.fail(task, prefix + describe(exc), retryable=not is_permanent(exc))

    def missing(self, task: luigi.Task) -> None:
        """luigi will not run ``task``: it is external and its data is missing, or its ``complete()`` raised (or
        answered no boolean).

        An external task's missing data is waited for (its step stays PENDING, saying so) when each missing
        output is a local file or an S3 object; else, as a ``complete()`` that raises (code that fails, told
        with its traceback, as luigi's worker logs it: a scheduling error), it is a failure no retry cures: no step of
        the run makes that data. ``complete()`` is not asked again: luigi's worker noted what it raised
        (:func:`~nectar.luigi_internals.complete_error`), the exception itself where it asked in this process, its
        text where it asked in a process of its scheduling pool (``[core] parallel_scheduling``), with whether trying
        again may cure it (:func:`retry_cures`, judged there).
        """
        noted = complete_error(task)
        if noted is not None and noted.error is not None:
            self.broken(task, noted.error, "complete() failed: ")
        elif noted is not None and noted.retryable:  # a store's outage: told in a line and retried, as :meth:`broken`
            kind, colon, message = noted.trace.rstrip().rsplit("\n", 1)[-1].partition(":")  # luigi's text's last line
            self.fail(task, f"complete() failed: {kind.rsplit('.', 1)[-1]}{colon}{message}"[:MAX_ERROR])
        elif noted is not None:
            said = noted.trace.rstrip().rsplit("\n", 1)[-1]  # its last line: the exception's type and message
            self.fail(task, traced(f"complete() failed: {said}"[:MAX_ERROR], noted.trace), retryable=False)
        elif is_external(task):
            try:
                absent = missing_uris(task)
            except NothingMissing:
                self.fail(task, f"external data missing: {nothing_missing(task)}", retryable=False)
                return
            except ValueError as exc:
                error = f"external data missing: {missing_outputs(task)} (it cannot be waited for: {exc})"
                self.fail(task, error, retryable=False)
                return
            self.waiting_for.extend(uri for uri in absent if uri not in self.waiting_for)
            self.record(task, "PENDING", f"waiting for {', '.join(absent)}")
        else:  # luigi tells DEPENDENCY_MISSING of a task it runs only for an answer its worker noted
            self.fail(task, "luigi will not run it: its complete() answered no boolean", retryable=False)

    def broken(self, task: luigi.Task, exc: BaseException, prefix: str) -> None:
        """Scheduling ``task`` raised (its ``complete()`` or ``requires()``): a failure with its traceback, no retry;
        unless a store or the registry was unusable, which is told in a line and retried unless permanent."""
        if isinstance(exc, Unavailable):  # the store (or the registry) failing, not the task's code: said as such
            self.raised(task, exc, prefix)
        elif not isinstance(exc, Interrupted):
            self.fail(task, with_traceback(exc, prefix), retryable=False)

    def record(self, task: luigi.Task, state: str, error: str | None = None) -> None:
        """Note ``task``'s ``state``; written now if it is a start or a failure, else with the next write.

        A task noted again before its last change was written takes that change's place (a step discovered PENDING,
        then started, is one row written, not two): what the registry keeps is the same, as its write of a step's
        row keeps its last state, error and time, the first row's place, and whether it ever ran. Whether it ran is
        the new change's own: a task started stays started (``_started`` only grows), so no change noted after a start
        says otherwise (the change it takes the place of was copied with it: ~260 of a trivial run's ~22,000
        bytecodes, for a value it already had).
        """
        key = getattr(log_key(task), "path", None)  # a plain luigi task's too: its logs are recorded alike
        step = Step(self.run_id, task.task_id, type(task).__name__, key, state, task.task_id in self._started, error)
        if state != "RUNNING":
            self._running.pop(task.task_id, None)
        with self._lock:
            place = self._places.get(task.task_id)
            if place is None:
                self._places[task.task_id] = len(self._pending)
                self._pending.append(step)
            else:
                self._pending[place] = step
        if state in ("RUNNING", "FAILED") or time.monotonic() - self._flushed >= FLUSH_INTERVAL:
            self.flush()

    def take(self) -> list[Step]:
        """What is pending, left for the caller to write (a run's end writes its last steps in its own commit)."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._places.clear()
        return pending

    def flush(self) -> None:
        """Write what is pending, in order (from any thread: the heartbeat's flushes too), only while the recorder's
        attempt owns its run: a frozen attempt that wakes after its run was reclaimed writes nothing into its
        successor's (its heartbeat flushes before it renews)."""
        lost = False
        with self._lock:
            if self._pending and not self.lost:
                self.lost = lost = not self.runs.record_steps(self._pending, self.attempt)
            self._pending = []
            self._places.clear()
            self._flushed = time.monotonic()
        if lost and self.on_lost is not None:
            self.on_lost()


_recorder: StepRecorder | None = None


def current_recorder() -> StepRecorder | None:
    """The recorder luigi's events reach in this process (None outside an attempt)."""
    return _recorder


def retry_cures(exc: BaseException) -> bool:
    """Whether a task's scheduling that raised ``exc`` may succeed if tried again: a store, the registry or luigid
    unusable for a while (:class:`~nectar.errors.Unavailable`), not for good (a missing bucket)."""
    return isinstance(exc, Unavailable) and not is_permanent(exc)


def _install_handlers() -> None:
    CompleteError.retry_cures = retry_cures  # judged in a process of luigi's scheduling pool too (forked from here)

    def forward(action: Any) -> Any:
        """A luigi event handler that passes the event to the current recorder, if any."""
        return lambda *args: action(_recorder, *args) if _recorder is not None else None

    handlers = {
        Event.DEPENDENCY_DISCOVERED: forward(lambda r, task, dep: r.record(dep, "PENDING")),
        Event.DEPENDENCY_PRESENT: forward(lambda r, task: r.record(task, "DONE")),
        Event.DEPENDENCY_MISSING: forward(lambda r, task: r.missing(task)),
        Event.BROKEN_TASK: forward(lambda r, task, exc: r.broken(task, exc, "requires() failed: ")),
        Event.SUCCESS: forward(lambda r, task: r.record(task, "DONE")),
        Event.FAILURE: forward(lambda r, task, exc: r.raised(task, exc)),
        # a step in a process of its own (parallel steps, a worker_timeout) that died, or was killed for its time
        Event.PROCESS_FAILURE: forward(lambda r, task, why: r.fail(task, why)),
        Event.TIMEOUT: forward(lambda r, task, why: r.fail(task, why)),
    }
    for event, handler in handlers.items():
        luigi.Task.event_handler(event)(handler)  # nectar's only handler of each: no order among its own to keep
    on_start("step", forward(lambda r, task: r.start(task)))  # START's, in its place among nectar's (on_start)
