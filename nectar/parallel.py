"""Parallel steps: how many tasks of one run run at once, and what a step forked to run beside others needs.

A run's steps run one at a time in its attempt's process unless its requested task's class says
``workers = N`` (or ``NECTAR_TASK_WORKERS`` does): then luigi's worker forks a process per running
step (``luigi.worker.TaskProcess``), up to N at once, as ``luigi --workers N`` does. Such a step,
through luigi's ``[worker] task_process_context`` (:class:`ForkedStep`):

- fires its own start, success and failure: a recorder of its own writes them to the registry at
  once, over a connection of the process's own (the registries open one per process), before luigi
  hears that the task ended, in the attempt's name (only while it owns its run; refused, the step's
  copy of the lease is lost: its commits are refused without asking, and the attempt is told at once,
  which stops it as a refusal of its own does, not at its next heartbeat); its failure also reaches the
  attempt, whose outcome names the first step that failed;
- commits its outputs through the attempt's fence (inherited: a read of the registry, or a renewal
  in the attempt's name); the heartbeat stays in the attempt;
- has its output captured in its own process, and ends with the attempt: an interrupted attempt
  (cancelled, reclaimed, its worker stopping) has luigi terminate its steps and waits for them;
  they are in its process group, killed if they linger, and get SIGTERM if the attempt dies.

Before each fork the attempt writes the step changes it holds, so that no step's state goes back.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.queues import SimpleQueue
from typing import Any

import luigi
import luigi.configuration
import luigi.worker

from nectar import lifeline
from nectar.errors import NectarError
from nectar.stdlib_internals import queue_reader
from nectar.steps import StepRecorder, current_recorder

logger = logging.getLogger(__name__)
#: the class attribute of a requested task that says how many of its run's steps may run at once
WORKERS_ATTRIBUTE = "workers"
#: luigi's ``[worker] task_process_context`` of an attempt's luigi worker
CONTEXT = f"{__name__}.ForkedStep"
#: seconds a step process still running when its build ends (interrupted) gets before it is killed
STEP_GRACE = 5.0

#: what a step failed with: (its task's name, why, whether trying again may cure it)
Failure = tuple[str, str, bool]
#: what a step process sends its attempt when a write in the attempt's name was refused (its run is no longer the
#: attempt's): the attempt's lease is lost now
LOST = "lost"
#: what reaches an attempt from its step processes: a failure or :data:`LOST`
News = Failure | str


class InvalidWorkers(NectarError, ValueError):
    """A task's ``workers`` is not a whole number of at least 1 (a chain's error: its run fails, not retried)."""


def step_workers(task: luigi.Task, default: int) -> int:
    """How many steps of ``task``'s run may run at once: its ``workers`` if it says, else ``default``."""
    value = getattr(task, WORKERS_ATTRIBUTE, None)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidWorkers(f"{type(task).__name__}.{WORKERS_ATTRIBUTE} must be a whole number ≥ 1, not {value!r}")
    return value


def refuse_invalid_workers(task: luigi.Task, default: int) -> int:
    """:func:`step_workers`; an invalid ``workers`` is the run's failure, which no retry cures."""
    try:
        return step_workers(task, default)
    except InvalidWorkers as exc:
        recorder = current_recorder()
        if recorder is not None and recorder.failed is None:
            recorder.failed = (type(task).__name__, f"{type(exc).__name__}: {exc}", False)
        raise


@dataclass
class _Attempt:
    """The attempt whose steps run in processes of their own: its process, its recorder, where failures go, and
    how its collector is told to stop: a pipe only the attempt writes (the queue's write lock is shared with the
    steps: one killed in the middle of a put leaves it held for ever)."""

    pid: int
    recorder: StepRecorder | None
    failures: SimpleQueue[News] = field(default_factory=multiprocessing.SimpleQueue)
    stop: tuple[Connection, Connection] = field(default_factory=lambda: multiprocessing.Pipe(duplex=False))


#: set in an attempt's process while its steps run forked (and inherited by those steps' processes)
_attempt: _Attempt | None = None
_fork_hook = False


@dataclass
class _ForkedStepRecorder(StepRecorder):
    """A step process's recorder: every change is written at once (luigi hears of the end right after), and its
    first failure is sent to the attempt."""

    failures: SimpleQueue[News] | None = None

    def record(self, task: luigi.Task, state: str, error: str | None = None) -> None:
        super().record(task, state, error)
        self.flush()

    def fail(self, task: luigi.Task, error: str, retryable: bool = True) -> None:
        first = self.failed is None
        super().fail(task, error, retryable)
        if first and self.failed is not None and self.failures is not None:
            self.failures.put(self.failed)


class ForkedStep:
    """luigi's ``task_process_context`` of an attempt's worker: set up a step process forked from the attempt.

    In the attempt's own process (one step at a time) it does nothing. A ``task_process_context`` of the
    user's luigi.cfg is entered inside it.
    """

    def __init__(self, process: luigi.worker.TaskProcess) -> None:
        attempt = _attempt
        self.attempt = attempt if attempt is not None and os.getpid() != attempt.pid else None
        self.recorder: _ForkedStepRecorder | None = None
        self.stack = ExitStack()
        configured = luigi.configuration.get_config().get("worker", "task_process_context", None)
        self.user = _load(configured)(process) if configured and configured != CONTEXT else None

    def __enter__(self) -> ForkedStep:
        attempt = self.attempt
        if attempt is not None:
            _end_quietly_once_orphaned(attempt.pid)  # before: a parent already gone is told at once
            lifeline.die_with_parent(attempt.pid)  # SIGTERM: the step is interrupted like its attempt
            if attempt.recorder is not None:  # one of its own: no lock, no batch, no connection shared with the attempt
                parent = attempt.recorder  # in the attempt's name: written only while it owns the run, as its own
                self.recorder = _ForkedStepRecorder(
                    parent.runs,
                    parent.run_id,
                    parent.attempt,
                    _lost(attempt, parent.on_lost),
                    failures=attempt.failures,
                )
                self.recorder.install()
        if self.user is not None:
            self.stack.enter_context(self.user)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stack.close()
        finally:
            if self.recorder is not None:
                try:  # what an earlier write could not record; luigi already has the step's outcome
                    self.recorder.flush()
                except Exception:
                    logger.exception("could not record the last steps of run %s", self.recorder.run_id)


def _end_quietly_once_orphaned(attempt: int) -> None:
    """In a step process forked from the attempt ``attempt`` (a pid): a SIGTERM that finds the attempt gone (killed:
    its death signal, or its worker ending what it left) ends the step at once, without a word. The attempt's own
    handler, inherited, would interrupt it saying "the worker is stopping" (luigi's WARNING and the step's traceback
    in the worker's log) where the worker goes on: it has said the attempt was killed and retries the run. A SIGTERM
    while the attempt lives (the worker stopping, the run cancelled) is the attempt's handler's, as before."""
    inherited = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: Any) -> None:
        if _gone(attempt):
            os._exit(128 + signum)  # as killed by it: nothing of the attempt's is left to flush or tell
        if callable(inherited):
            inherited(signum, frame)
        elif inherited != signal.SIG_IGN:  # the default action (the attempt set none of its own)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, terminate)


def _gone(attempt: int) -> bool:
    """Whether the attempt ``attempt`` (this step process's parent, a pid) has ended or is ending: this process was
    handed to another, or the attempt's main thread is a zombie. The parent-death signal is sent as the thread that
    forked this process exits: killed, an attempt's threads exit one by one, and while another of them is still
    exiting this process is its child still (the kernel hands the children to a thread of the same process first)."""
    if os.getppid() != attempt:
        return True
    try:
        with open(f"/proc/{attempt}/stat", "rb") as stat:
            said = stat.read()
    except OSError:
        return True
    state = said[said.rindex(b")") + 2 : said.rindex(b")") + 3]
    return state in (b"Z", b"X")


def _lost(attempt: _Attempt, on_lost: Callable[[], None] | None) -> Callable[[], None]:
    """What a step process does when a write in its attempt's name is refused: the attempt is told, which stops at
    once, and its copy of the lease is lost (``on_lost``: its commits are refused without asking). Told first:
    ``on_lost`` wakes an Event inherited from the attempt, whose lock a thread there may have held at the fork (held
    for ever here), so the step may block in it."""

    def lost() -> None:
        attempt.failures.put(LOST)
        if on_lost is not None:
            on_lost()

    return lost


def _load(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@contextmanager
def forked_steps() -> Iterator[None]:
    """While a build runs its steps in processes of their own: collect their failures into this process's
    recorder, flush it before each fork, and leave no step process behind."""
    global _attempt, _fork_hook
    if not _fork_hook:
        os.register_at_fork(before=_flush_before_fork)
        _fork_hook = True
    attempt = _Attempt(os.getpid(), current_recorder())
    collector = threading.Thread(target=_collect, args=(attempt,), name="nectar-step-failures", daemon=True)
    collector.start()
    _attempt = attempt
    try:
        yield
    finally:
        _attempt = None
        _end_step_processes()
        stop_reader, stop_writer = attempt.stop
        stop_writer.send_bytes(b"")
        collector.join()
        stop_reader.close()
        stop_writer.close()


def forks_on_demand(forks: ExitStack) -> Callable[[], str]:
    """For a build whose steps run in its attempt's process: what its worker calls as a step is to run in a process
    of its own all the same (luigi forks for a task's ``worker_timeout``, to end it past that time): the build's
    steps are :func:`forked_steps` from then on (entered on ``forks``, once), and the step runs in
    :data:`CONTEXT`, as a step of ``workers = N`` does."""
    entered = False

    def forking() -> str:
        nonlocal entered
        if not entered:
            forks.enter_context(forked_steps())
            entered = True
        return CONTEXT

    return forking


def _collect(attempt: _Attempt) -> None:
    """Take the step processes' news, in the order it came, until told to stop (its pipe): a failure is the
    attempt's (its first names the run's); a refused write (:data:`LOST`) loses the attempt's lease, as its own
    refusal does. News already sent when it is told to stop is taken first."""
    news_reader = queue_reader(attempt.failures)
    stop_reader = attempt.stop[0]
    while news_reader in multiprocessing.connection.wait([news_reader, stop_reader]):
        news = attempt.failures.get()
        recorder = attempt.recorder
        if recorder is None:
            continue
        if news == LOST:
            if recorder.on_lost is not None:
                recorder.on_lost()
        elif recorder.failed is None and isinstance(news, tuple):
            recorder.failed = news


def _flush_before_fork() -> None:
    attempt = _attempt
    if attempt is None or attempt.recorder is None or os.getpid() != attempt.pid:
        return
    try:
        attempt.recorder.flush()
    except Exception:  # the batch waits for the next flush; the step's own writes may then come first
        logger.exception("could not record the steps of run %s before forking a step", attempt.recorder.run_id)


def _end_step_processes() -> None:
    """Wait for the step processes luigi left (it only signals them when interrupted); kill those that linger."""
    for process in multiprocessing.active_children():
        if isinstance(process, luigi.worker.TaskProcess):
            process.join(STEP_GRACE)
            if process.is_alive():
                process.kill()
                process.join()
