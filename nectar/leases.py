"""Leases on attempts: the heartbeat that holds one, the read that says it lapsed, the reclaim that ends it.

An attempt holds its run while its process renews the lease every ``heartbeat_interval``
(:class:`AttemptLease`). One whose lease ran out (no heartbeat for ``lease_timeout``) or whose
process is gone is lost: only a worker's loop reclaims it (:func:`reclaim`: fail it per its retry
policy, and tell luigid that its steps failed, :func:`release`). A status read only tells that
it lapsed (:func:`lapsed`); it never writes. An attempt running longer than its maximum runtime
fails itself, "timed out", not retried, and stops as a cancelled one does.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from nectar import forks, main_signals, reuse, standby
from nectar.build import luigi_worker_id
from nectar.errors import Interrupted, SchedulerUnavailable
from nectar.grace import Grace
from nectar.luigid import SchedulerClient
from nectar.registry import Run, RunState, RunStore
from nectar.registry.schema import RunStatus
from nectar.relay import Relay, Turn
from nectar.stdlib_internals import new_event

logger = logging.getLogger(__name__)
HOST = socket.gethostname()
#: how the error of a run failed for running too long begins
TIMED_OUT = "timed out"


#: runs this process executed before the one it holds or waits for (a process that takes more than one run:
#: :mod:`nectar.reuse`)
_runs_done = 0


def process_name(pid: int | None = None, runs_done: int | None = None) -> str:
    """The name of this process (or of ``pid``, on this host, which executed ``runs_done`` runs before) as an
    attempt's holder: ``host:pid`` for its first run, ``host:pid.n`` for its n-th. Its luigi worker's id is made of it
    (:func:`~nectar.build.luigi_worker_id`): each run of a process is a worker of its own in luigid, so that a step
    luigid holds for an earlier run's worker is never handed to a later one's."""
    done = (_runs_done if pid is None else 0) if runs_done is None else runs_done
    return f"{HOST}:{pid or forks.pid()}" + (f".{done + 1}" if done else "")


def ran_one() -> None:
    """This process ended a run and waits for its next one: its name changes (:func:`process_name`)."""
    global _runs_done
    _runs_done += 1


def holder(worker: str) -> tuple[str, int | None]:
    """The host and the pid of the process an attempt's holder ``host:pid`` (or ``host:pid.n``) names (None: no pid)."""
    host, _, name = worker.rpartition(":")
    pid = name.partition(".")[0]
    return host, int(pid) if pid.isdigit() else None


def is_dead(worker: str) -> bool:
    """Whether ``host:pid`` (or ``host:pid.n``) names a process of this host that no longer exists."""
    host, pid = holder(worker)
    if host != HOST or pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lapsed(run: Run | RunStatus, runs: RunStore, lease_timeout: float) -> str | None:
    """Why the RUNNING attempt of ``run`` looks lost (a read: nothing is changed), or None while it is held: by the
    rule the heartbeat and the reclaim follow (:meth:`~nectar.registry.store.RunStore.lease_silence`)."""
    if run.state != RunState.RUNNING:
        return None
    silent = runs.lease_silence(run, lease_timeout)
    if silent is not None:
        return f"no heartbeat for {silent:.0f}s"
    if run.worker and is_dead(run.worker):
        return "its process is gone"
    return None


def timed_out(run: Run) -> bool:
    """Whether ``run`` ended FAILED for running longer than its maximum runtime."""
    return run.state == RunState.FAILED and (run.error or "").startswith(TIMED_OUT)


def release(
    runs: RunStore,
    run: Run,
    reason: str,
    scheduler: SchedulerClient | None,
    counted: bool = True,
    policies: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """After ``run``'s attempt died: mark its running steps failed, here and in luigid, only while no later
    attempt has claimed the run (its steps, which may be the same, are that attempt's to tell). Once one has, luigid
    is told only of a task it still has RUNNING in this attempt's worker's name (else it waits until it times that
    worker out to hand the task to the later one): one it has not handed to a worker would be failed in anyone's.

    Of a cancelled run (once its attempt's process has ended), luigid is told that every unfinished
    step is DISABLED with ``reason``: it keeps them so, not retried, until they are submitted again.
    ``counted=False``: the steps were interrupted, no failure of theirs (the run requeued as its worker stopped):
    luigid counts them not toward their ``retry_count`` (:meth:`~nectar.luigid.SchedulerClient.fail`).

    ``policies``: the steps' retry policies by task id, sent with what luigid is told of each (an attempt releasing
    its own steps has them: :meth:`~nectar.build.Build.policies`); luigi's own luigid takes its ``[scheduler]``
    defaults for a step told without one. A worker's loop runs no chain code: it has none to send.
    """
    cancelled = run.state == RunState.CANCELLED
    steps = runs.steps(run.id)
    running = [step for step in steps if step.state == "RUNNING"]
    taken = not cancelled and bool(running) and not runs.fail_running_steps(run, reason)  # by a later claim
    if scheduler is None:
        return
    worker = luigi_worker_id(run.worker or "?")
    told = [step for step in steps if step.state != "DONE"] if cancelled else running
    for step in told:
        try:  # luigid would otherwise keep the task RUNNING until it times the dead worker out
            if taken and (scheduler.task(step.task_id) or {}).get("worker_running") != worker:
                continue
            policy = (policies or {}).get(step.task_id)
            if cancelled:
                scheduler.disable(step.task_id, worker, reason, policy)
            else:
                scheduler.fail(step.task_id, worker, reason, counted, policy)
        except SchedulerUnavailable as exc:
            logger.warning("could not tell luigid that %s ended: %s", step.task_id, exc)
    if not cancelled:
        granted_not_started(scheduler, worker, {step.task_id for step in told}, reason, counted, policies)


def granted_not_started(
    scheduler: SchedulerClient,
    worker: str,
    told: set[str],
    reason: str,
    counted: bool,
    policies: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    """Tell luigid that the tasks it holds RUNNING in ``worker``'s name, beyond those ``told`` already, failed: steps
    it granted the attempt that had not started yet (the registry had them PENDING: the attempt ended between
    luigid's answer and the step's start, killed or stopped). luigid kept them RUNNING until it timed the worker out
    (``worker_disconnect_delay``), and told the run's next attempt meanwhile that another worker runs its step."""
    try:
        for task_id, holder in held_in_luigid(scheduler).items():
            if holder == worker and task_id not in told:
                scheduler.fail(task_id, worker, reason, counted, (policies or {}).get(task_id))
    except SchedulerUnavailable as exc:
        logger.warning("could not tell luigid that the steps %s held ended: %s", worker, exc)


def held_in_luigid(scheduler: SchedulerClient) -> dict[str, str]:
    """The tasks luigid holds RUNNING (or BATCH_RUNNING: a batch's members), each with the worker it holds it in the
    name of (luigi's ``task_list``; one that lists too many to answer, a count, lists none)."""
    held = {}
    for status in ("RUNNING", "BATCH_RUNNING"):
        listed = scheduler.call("task_list", status=status, upstream_status="", search=None) or {}
        for task_id, task in listed.items():
            if isinstance(task, dict) and task.get("worker_running"):
                held[task_id] = str(task["worker_running"])
    return held


def reclaim(runs: RunStore, lease_timeout: float, scheduler: SchedulerClient | None) -> list[Run]:
    """End the attempts whose lease ran out or whose process (on this host) is gone, and release what they
    held: a worker's duty, never a read's. Answers those runs as they were."""
    lost = runs.reclaim(lease_timeout, dead=is_dead)
    for run in lost:
        about = {"run_id": run.id}
        logger.warning(
            "run %s of %s: attempt %d lost (worker %s)", *(run.id, run.ref, run.attempt, run.worker), extra=about
        )
        release(runs, run, f"worker lost: {run.worker}", scheduler)
    return lost


#: how often a worker compares its node's clock with the registry's (seconds), the first time as it starts
CLOCK_CHECK_PERIOD = 600.0
#: the share of a lease's margin (its timeout less the heartbeat interval) a node's clock may be off the registry's
#: before the node warns: two nodes off by half the margin, one ahead and one behind, take each other's live attempts
#: for lost
SKEW_SHARE = 0.25


def clock_skew_bound(lease_timeout: float, heartbeat_interval: float) -> float:
    """How far every node's clock must stay from the registry's: half the lease's margin. A heartbeat is written in
    its node's clock and judged in the reclaiming node's: a reclaimer whose clock is ahead of a writer's by the
    margin or more takes the writer's live attempts for lost."""
    return (lease_timeout - heartbeat_interval) / 2


def check_clock(runs: RunStore, lease_timeout: float, heartbeat_interval: float) -> float | None:
    """Compare this node's clock with the registry's, and warn (naming the skew and the lease) when it is off by
    :data:`SKEW_SHARE` of the lease's margin or more, beyond what the read itself leaves unknown; the skew (None: the
    registry has no clock of its own)."""
    measured = runs.clock_skew()
    if measured is None:
        return None
    skew, within = measured
    if abs(skew) - within >= SKEW_SHARE * (lease_timeout - heartbeat_interval):
        bound = clock_skew_bound(lease_timeout, heartbeat_interval)
        logger.warning(
            "this node's clock is %.3fs %s the registry's (±%.3fs): leases (NECTAR_LEASE %gs, NECTAR_HEARTBEAT %gs) "
            "are judged in each node's clock, which must stay within %gs of the registry's, or a node ahead "
            "reclaims the live attempts of a node behind: keep the clocks in sync (NTP)",
            *(abs(skew), "ahead of" if skew > 0 else "behind", within, lease_timeout, heartbeat_interval, bound),
        )
    return skew


class ClockCheck:
    """A worker's :func:`check_clock`, first as it starts, then every :data:`CLOCK_CHECK_PERIOD` seconds (a registry
    that could not be read is asked again at the next call)."""

    def __init__(self, runs: RunStore, lease_timeout: float, heartbeat_interval: float) -> None:
        self.runs, self.lease_timeout, self.heartbeat_interval = runs, lease_timeout, heartbeat_interval
        self._due = float("-inf")

    def __call__(self) -> None:
        if time.monotonic() < self._due:
            return
        check_clock(self.runs, self.lease_timeout, self.heartbeat_interval)
        self._due = time.monotonic() + CLOCK_CHECK_PERIOD


#: how often a clock re-reads how far its machine's clock is off the registry's (seconds): a clock stepped meanwhile
#: fires by its old reading for at most this long
REGISTRY_CLOCK_PERIOD = 60.0
#: how far off the registry's a clock's machine may be before it says so (seconds); it fires by the registry's anyway
REGISTRY_CLOCK_WARN = 1.0


class RegistryClock:
    """The registry's time, as this node's clock corrected by how far it was last measured off the registry's
    (:meth:`RunStore.clock_skew`, PostgreSQL's ``clock_timestamp()``; read again every :data:`REGISTRY_CLOCK_PERIOD`
    seconds): a clock fires by it, so a machine whose clock is ahead never makes a fire of a time its registry has not
    reached, and one behind is not late. A node off by more than :data:`REGISTRY_CLOCK_WARN` says so at WARNING. A
    SQLite registry is one host's file, its processes' clock the registry's: this node's clock as it is. A registry
    that cannot be read keeps the last measure, and is asked again after :data:`RETRY_MEASURE` seconds."""

    RETRY_MEASURE = 5.0

    def __init__(self, runs: RunStore, clock: Callable[[], float] = time.time) -> None:
        self.runs, self.clock = runs, clock
        self.skew = 0.0
        self._due = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> float:
        if time.monotonic() >= self._due:
            self._measure()
        return self.clock() - self.skew

    def _measure(self) -> None:
        with self._lock:
            if time.monotonic() < self._due:
                return  # another thread measured meanwhile
            try:
                measured = self.runs.clock_skew()
            except Exception:
                logger.debug("cannot read the registry's clock: asked again in %gs", self.RETRY_MEASURE, exc_info=True)
                self._due = time.monotonic() + self.RETRY_MEASURE
                return
            if measured is None:  # no clock of its own: this node's is the registry's, never asked again
                self._due = float("inf")
                return
            skew, within = measured
            if abs(skew) - within >= REGISTRY_CLOCK_WARN and abs(skew - self.skew) >= REGISTRY_CLOCK_WARN:
                logger.warning(
                    "this node's clock is %.3fs %s the registry's (±%.3fs): schedules fire by the registry's time, "
                    "not this node's; keep the clocks in sync (NTP)",
                    *(abs(skew), "ahead of" if skew > 0 else "behind", within),
                )
            self.skew = skew
            self._due = time.monotonic() + REGISTRY_CLOCK_PERIOD


def release_lost_in_luigid(scheduler: SchedulerClient) -> None:
    """Tell luigid that the tasks it holds RUNNING for attempt processes of this host that are gone failed, so that
    runs needing them go on now, not once luigid times those workers out (a worker does it when luigid (re)starts,
    maybe from a state saved as a crash began)."""
    try:
        for task_id, worker in held_in_luigid(scheduler).items():
            if worker.startswith(luigi_worker_id("")) and is_dead(worker.removeprefix(luigi_worker_id(""))):
                reason = f"worker lost: {worker} is gone"
                scheduler.fail(task_id, worker, reason)  # a failure named: sent again, it is counted once
    except SchedulerUnavailable as exc:  # the next return of luigid tries again
        logger.warning("could not release the tasks of lost attempts in luigid: %s", exc)


#: the lease of the attempt this process's main thread runs now (None: none), which the lease's signal handlers act on
_current: AttemptLease | None = None


def _interrupt(*_: Any) -> None:
    """SIGUSR2 (the heartbeat's, once the lease is lost): the attempt running now is interrupted; none, ignored (a
    late interrupt must not kill a process that has finished its attempt), and so is one whose lease is not lost: the
    interrupt of an ended lease's heartbeat, its renewal failed as its run ended, that came once the next attempt
    began."""
    if _current is not None and _current.lost:
        _current._raise()


class WorkerGone(BaseException):
    """Raised in a spare's main thread by SIGTERM once its worker died (its parent-death signal) while it waited for
    a run, or held one whose attempt had not begun (:func:`await_run`): ``name``, the name a run would have been
    claimed in for it. A BaseException: nothing on the way to the attempt's start takes it for the attempt's error."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the worker of {name} is gone")
        self.name = name


#: while this process (a spare) waits for a run, or holds one whose attempt has not begun: the name its worker claims
#: in for it (:func:`process_name`) and its worker's pid (None: it holds an attempt, or is no spare)
_awaiting: tuple[str, int] | None = None


def await_run(worker: int) -> None:
    """In a spare, as it says it is ready: from now until its attempt's lease is taken, a run its worker (``worker``)
    claims for it has not begun here. SIGTERM then acts as before while that worker lives (the process ends; its
    worker, which sees it die, requeues what it handed it, uncounted), and raises :class:`WorkerGone` once the
    worker is gone (a ``kill -9``): the process itself must then put back what was claimed in its name, as no one
    else can tell that nothing of it ran."""
    global _awaiting
    _awaiting = (process_name(), worker)


#: whether SIGTERM does nothing now (:func:`ignore_stops`)
_ignoring = False


def _terminate(*_: Any) -> None:
    """SIGTERM: the attempt running now requeues its run and stops; none, in a spare whose worker is gone
    (:func:`await_run`), :class:`WorkerGone`; else the signal's default action (the process ends, killed by it)."""
    if _ignoring:
        return
    if _current is not None:
        _current._stop()
        return
    if _awaiting is not None and os.getppid() != _awaiting[1]:
        raise WorkerGone(_awaiting[0])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def handle_stops() -> None:
    """Make the lease's SIGTERM handler this process's own now, before its first attempt (a spare, as it is forked:
    :func:`await_run`); its attempts' leases set it, and the other signals', as they begin."""
    reuse.process_handler(signal.SIGTERM, _terminate)


def ignore_stops() -> None:
    """In a spare that will exit once it put back what was claimed for it (:func:`await_run`): SIGTERM does nothing
    from now on, one that came already and whose handler is yet to run too. Not a mask of the main thread's: the
    kernel gives a signal the main thread blocks to another of its threads (a heartbeat standing by), and Python runs
    the handler in the main thread all the same."""
    global _ignoring
    _ignoring = True


def _continued(*_: Any) -> None:
    """SIGCONT: a frozen attempt's heartbeat renews at once (the process is continued either way)."""
    if _current is not None:
        _current._wake.set()


#: the lease's handlers, set once in a process (its first attempt) and left set: each acts on the attempt running
#: then, if any (:data:`_current`), and between attempts as the signal's handler did then (SIGUSR2 ignored, SIGTERM's
#: and SIGCONT's default actions). Set and set back around every attempt, they cost 6 ``rt_sigaction`` a run (and
#: :mod:`nectar.reuse` set the process's first ones back after each run: 6 more, and one for SIGUSR2 ignored)
LEASE_HANDLERS: dict[int, Callable[..., None]] = {
    signal.SIGUSR2: _interrupt,  # not SIGUSR1: luigi's worker takes that one
    signal.SIGTERM: _terminate,
    signal.SIGCONT: _continued,
}


#: the heartbeats of this process's attempts, one after another on one standby thread (:mod:`nectar.relay`)
HEARTBEATS: Relay[AttemptLease] = Relay()


class AttemptLease:
    """The executing process's hold on its attempt, renewed by a heartbeat thread.

    When a renewal is refused, the main thread is interrupted (:class:`Interrupted` is raised in
    it) and, if the attempt has not ended within its grace (:class:`~nectar.grace.Grace`), the process group
    is killed: a cancelled or reclaimed attempt never goes on writing. A process that was frozen
    (SIGSTOP) renews at once when it is continued, so it learns first thing that it lost its lease: its run reclaimed,
    or, with ``lease_timeout``, its lease run out while it was frozen, reclaimed or not yet
    (:func:`~nectar.registry.model.lease_ran_out`): the renewal is refused, the attempt stops without a commit, and
    a worker's reclaim retries its run per its policy.
    Past ``max_runtime`` seconds from its claim (0: no limit), the attempt records its run FAILED,
    "timed out", not retried, and is stopped the same way.

    A heartbeat on a standby thread is not woken when its attempt ends: the process's next attempt takes it over
    (:data:`HEARTBEATS`), or it ends at its next beat.
    """

    def __init__(
        self, runs: RunStore, run: Run, interval: float, max_runtime: float = 0.0, lease_timeout: float | None = None
    ) -> None:
        self.runs, self.run, self.interval = runs, run, interval
        #: how long the lease holds without a renewal: one that ran out is renewed no more (None: no bound)
        self.lease_timeout = lease_timeout
        #: the attempt's process: a step forked from it (parallel steps) renews in its name
        self.process = process_name()
        self.lost = False
        self.stopping = False
        #: the error the run was failed with when it ran past its maximum runtime
        self.timed_out: str | None = None
        #: when the lease was last renewed (monotonic: a frozen process's silence counts); what each beat also does.
        #: A claim is a renewal: an attempt handed over at once (by a spare's parent) starts from it.
        claimed_ago = time.time() - (run.heartbeat_at or 0.0)
        self._renewed = time.monotonic() - claimed_ago if 0 <= claimed_ago < interval / 2 else float("-inf")
        #: when the attempt's maximum runtime began (monotonic): its claim, read in this node's wall clock, which
        #: the claim's time was written in too (its worker's loop claims on this host), unless that clock was
        #: stepped in between (NTP, a resumed VM): a claim in the future is taken as now, and so is one a lease or
        #: more ago, which no live attempt has (its lease would have run out: its first renewal is refused, and a
        #: worker's reclaim retries it per its policy). It was counted from then: a clock stepped forward by the
        #: maximum runtime failed the run "timed out", not retried, at its first beat
        since_claim = time.time() - (run.started_at or time.time())
        held = 0.0 <= since_claim < (lease_timeout if lease_timeout is not None else float("inf"))
        self._started = time.monotonic() - (since_claim if held else 0.0)
        self.max_runtime = max_runtime
        self.on_beat: Callable[[], None] | None = None
        self._ended = new_event()  # threading's, made without its Condition's caught errors
        #: its heartbeat's place in :data:`HEARTBEATS`: its event (woken: a beat now) and when its next beat is due
        self._turn: Turn[AttemptLease] = Turn(self, float("inf"))
        #: whether its heartbeat runs on a standby thread, not woken at its end (:data:`HEARTBEATS`)
        self._relayed = False
        self._signals = threading.current_thread() is threading.main_thread()

    @property
    def _wake(self) -> threading.Event:
        """The event its heartbeat waits on between two beats: set, it beats now."""
        return self._turn.wake

    def limit(self, max_runtime: float) -> None:
        """Bound the attempt to ``max_runtime`` seconds from its claim (0: no limit)."""
        sooner = max_runtime != self.max_runtime and 0 < max_runtime < time.monotonic() - self._started + self.interval
        self.max_runtime = max_runtime
        if sooner:  # before the heartbeat thread's next beat: it looks again now (else no beat is added)
            self._wake.set()

    def renew(self) -> bool:
        began = time.monotonic()
        if not self.lost and not self.runs.heartbeat(self.run.id, self.run.attempt, self.process, self.lease_timeout):
            self.lost = True
        if not self.lost:
            self._renewed = began
        return not self.lost

    def refused(self) -> None:
        """A write of the attempt's own found that it no longer owns its run (a step's start, :mod:`nectar.steps`):
        the lease is lost, the fence refuses every commit from now on without asking, and the heartbeat stops the
        attempt now, not at its next beat."""
        self.lost = True
        self._wake.set()

    def confirm(self) -> bool:
        """Whether the attempt may commit an output now (the fence's question).

        Within a heartbeat interval of the last renewal (and within its lease), the lease cannot have run out, so a
        read that finds the attempt still RUNNING (not cancelled, not reclaimed) is enough (SQLite answers it
        without a read while no one else has committed since it last did); after a longer silence (the
        process was frozen, or the registry slow) the lease is renewed first.
        """
        if self.lost or time.monotonic() - self._renewed >= min(self.interval, self.lease_timeout or self.interval):
            return self.renew()
        if not self.runs.owns(self.run.id, self.run.attempt):
            self.lost = True
        return not self.lost

    def __enter__(self) -> AttemptLease:
        global _current, _awaiting
        if self._signals:  # (an attempt's lease is taken in its main thread)
            _current, _awaiting = self, None  # its attempt has begun: a SIGTERM from here on stops it
            for signum, handler in LEASE_HANDLERS.items():  # once per process (unless something set another since)
                reuse.process_handler(signum, handler)
            main_signals.watch()  # once per process: if another thread takes the signal, the handler runs all the same
        try:
            self._turn.due = time.monotonic() + self._left()
            self._relayed = HEARTBEATS.take_over(self._turn) is not None or standby.hand(self._beat) is not None
            if not self._relayed:  # a spare's thread started ahead, if it has one; else one of its own
                standby.start(self._beat, "nectar-heartbeat")
        except BaseException:  # no attempt runs (its ``with`` is left at once): the handlers act on none
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        global _current
        self._ended.set()
        if self._relayed:
            HEARTBEATS.end(self._turn)
        else:
            self._turn.ended = True
            self._wake.set()
        if self._signals and _current is self:  # a late interrupt must not kill a process that has finished its attempt
            _current = None

    def _raise(self, *_: Any) -> None:
        if self.stopping:
            raise Interrupted("the worker is stopping")
        raise Interrupted(self.timed_out or "the run was cancelled or reclaimed")

    def _stop(self, *_: Any) -> None:
        self.stopping = True
        self._raise()

    def _left(self) -> float:
        """Seconds until the next beat: an interval, or less when the maximum runtime comes sooner."""
        left = self._started + self.max_runtime - time.monotonic() if self.max_runtime else 0.0
        return min(self.interval, left) if left > 0 else self.interval  # overdue: the last try failed, wait

    def _time_out(self) -> None:
        """Fail the run, not retried, naming the step running now; the lease is lost either way."""
        if self.on_beat is not None:
            self.on_beat()  # the steps' last changes, so that the one running now is known
        running = [step.task for step in self.runs.steps(self.run.id) if step.state == RunState.RUNNING]
        error = f"{TIMED_OUT}: attempt {self.run.attempt} ran longer than its maximum runtime ({self.max_runtime:g}s)"
        if self.runs.fail(self.run.id, self.run.attempt, running[-1] if running else self.run.task, error, False):
            self.timed_out = error
        self.lost = True

    def _beat(self) -> None:
        """The heartbeat: a beat when due, or at once when woken; for the leases that take its thread over too."""
        HEARTBEATS.serve(self._turn, AttemptLease._beat_once)

    def _beat_once(self) -> float | None:
        """One beat: the lease renewed (or timed out); when the next is due, None once the lease is lost (the attempt
        is stopped)."""
        try:
            if self.max_runtime and time.monotonic() - self._started >= self.max_runtime:
                self._time_out()
            else:
                if self.on_beat is not None:
                    self.on_beat()
                if self.renew():
                    return time.monotonic() + self._left()
        except Exception:  # the registry is briefly unusable: the lease may still be ours
            logger.exception("heartbeat of run %s failed", self.run.id, extra={"run_id": self.run.id})
            return time.monotonic() + self._left()
        if not HEARTBEATS.give_up(self._turn):  # ended as it beat, and taken over: its thread beats for the next now
            return time.monotonic()
        if self._ended.is_set():  # the attempt ended as this beat renewed (its run no longer RUNNING): nothing lost
            return None
        about = {"run_id": self.run.id}  # this thread does not share the main thread's context
        if self.timed_out:
            logger.warning("run %s %s: stopping it", self.run.id, self.timed_out, extra=about)
        else:
            logger.warning(
                "run %s lost its lease (cancelled, reclaimed or run out): stopping it", self.run.id, extra=about
            )
        if self._signals:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)
        if not Grace(os.getpid()).ended(self._ended.wait) and os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        return None
