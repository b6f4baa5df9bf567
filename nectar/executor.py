"""Workers: claim queued runs from the registry and execute each in a child process (one run after another, while
each ends cleanly: :mod:`nectar.reuse`).

The parent (``nectar worker``) executes the chain files once, as it starts, before its first fork (so that what they
import is imported once, its pages shared by the attempts: :func:`nectar.cli.local.execute_chains`, or its clock's
catalog; each first in a probe child, within :data:`~nectar.catalog.loader.AHEAD_BUDGET`), and none of a run's code
after: it compiles a claimed run's chain file, once per change of
its stamp, for the attempts it forks next (:meth:`Executor._compile_ahead`). Each attempt runs in a child, in its own
process group (a cancel kills the task's subprocesses too), that loads the chain file as it is on disk *now* (a fixed
chain takes effect on the next run without a restart) and runs ``luigi.build`` against the central scheduler (or
luigi's local one): :mod:`nectar.attempt`. What every attempt would import or read (boto3 through
``luigi.contrib.s3`` where the store is S3, luigi's settings and logging) is loaded in the parent before its first
fork, not while it is idle (:meth:`Executor.warm`).

The child is forked before there is work for it (a *spare*, set up and waiting on a socket: :mod:`nectar.spares`,
which says how many are kept: none once ``NECTAR_SPARE_IDLE`` seconds pass without runs wanted): a claim names a
ready spare as the attempt's process and hands it the run, so neither the fork nor a first heartbeat stands between a
submission and its task starting. An attempt that ended its run cleanly says so on that socket and becomes a spare
again, up to ``NECTAR_RUNS_PER_PROCESS`` runs, unless its run left something behind (a thread, a child, a resident
size grown past ``NECTAR_PROCESS_MAX_RSS_MB``: :func:`nectar.reuse.left_behind`), then it exits. A spare also
executes ahead the chain file of the run its worker claimed last (or, taken back, of its own last run: the likeliest
to come next, :class:`Likely`), and its attempt takes that module if its run is of that chain and the file has not
changed since: the chain's import is then off the path from claim to ``run()``.

The loop (:meth:`Executor._serve_once`) reaps ended attempts, watches leases, claims what its free slots and ready
spares can take, keeps the spares wanted (a fork at most per pass), then sleeps in one ``poll()`` until there may be
something to do: the registry's word that a run was queued (:meth:`~nectar.registry.store.RunStore.wait_for_work`),
an attempt's process exiting, starting its first step or ending its run, a spare ready, a signal, the time a retry's
delay ends; at most ``NECTAR_WORKER_POLL`` seconds, or, idle (no attempt, no spare), until its next look of its own
(:meth:`Executor._idle_for`: the leases' watch, luigid's ask, a look for a run though nothing told of one).

Nothing is lost and nothing runs twice at once (see :mod:`nectar.attempt` for the attempt's side):

- every worker reclaims attempts whose lease ran out (or, on its own host, whose process is
  gone: :mod:`nectar.leases`; a status read never does), retrying them per their policy, and
  tells luigid the dead attempt's task failed so the retry need not wait for luigid to time the
  old worker out;
- an attempt's process that dies is its attempt's failure, said at WARNING with the signal or exit code and
  retried per policy; one that dies before it read its run is requeued, uncounted (the attempt never began);
- a child whose attempt is no longer its own (its run cancelled, its attempt reclaimed or past ``NECTAR_MAX_RUNTIME``)
  is killed with its process group :data:`~nectar.grace.INTERRUPT_GRACE` seconds after its worker sees it (seconds it
  could use: :class:`~nectar.grace.Grace`);
- a stopping worker (SIGTERM, SIGINT or SIGHUP) stops claiming, lets running attempts finish for
  ``drain_grace`` seconds, then interrupts them and puts them back in the queue, uncounted; a
  second signal, or the death of the ``nectar serve`` that started it, interrupts them at once;
- the children die with the worker (:mod:`nectar.lifeline`): killed even by SIGKILL, it leaves no
  spare behind, and each attempt interrupts itself and requeues its run, as on SIGTERM;
- no run is claimed while luigid is unreachable: the queue waits for it (and as luigid answers again, the tasks it
  holds RUNNING for this host's attempt processes that are gone are failed there);
- a registry that stops answering (PostgreSQL restarting) is waited for, said once at WARNING; what was not
  recorded meanwhile, the leases recover.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import luigi

from nectar import build, forks, main_signals, standby, wakeup
from nectar.attempt import attempt, chain_file, execute, quiet_luigi, rehearse
from nectar.build import Build
from nectar.catalog.loader import AHEAD_BUDGET, chain_code, load_ahead
from nectar.catalog.stamps import Stamp, file_stamp
from nectar.config import Settings, load_luigi_config
from nectar.errors import RegistryUnavailable, SchedulerUnavailable
from nectar.grace import Grace
from nectar.leases import ClockCheck, process_name, reclaim, release, release_lost_in_luigid, timed_out
from nectar.logs.ahead import make_ahead
from nectar.luigi_internals import program_errors_keep_environment, worker_user
from nectar.luigid import kept_scheduler, scheduler_of, scheduler_secret
from nectar.registry import Run, RunState, RunStore, open_run_store
from nectar.shutdown import Shutdown
from nectar.spares import (
    ENDED,
    READY,
    STARTED,
    UNREAD,
    Spare,
    Spares,
    end_group,
    freeze_held,
    hand_over,
    heard,
    started,
    unread_by_peer,
)
from nectar.stores import get_store
from nectar.stores.local import remove_staged
from nectar.task import on_start

logger = logging.getLogger(__name__)
#: seconds between two looks for finished attempts while some run, where the kernel cannot say when one exits
#: (:func:`nectar.wakeup.exits`); where it can, its exit wakes the loop
REAP_INTERVAL = 0.01
#: what a spare says once it is set up: it executed its likely chain file ahead, or it could not (failed, too long)
AHEAD, NOT_AHEAD = b"a", b"n"
#: seconds after its claim an attempt that has not started its first step still holds back the last spare's fork
#: (:meth:`Executor._hold`): a run whose first step takes long to schedule (a wide graph) keeps its spares coming
START_WAIT = 0.1
#: seconds after a look found no run due that the loop looks again though nothing told of one: the word of a run
#: queued is an event (inotify, NOTIFY) that a fault can lose (inotify out of instances, a connection cut between
#: a commit and its word); a lost one then delays that run by this much, never leaves it PENDING for good (one
#: futile claim a second per idle worker: about 0.04% of a core)
LOOK_ANYWAY = 1.0
#: of the seconds between two asks whether luigid answers (``heartbeat_interval``): how old its answer may be before a
#: pass that claims nothing asks again, so that a claim seldom waits for luigid's (a worker woken by a run queued asked
#: it first once every 2 s: an RPC, 0.3 ms on an idle machine, 26 ms seen on a loaded one)
CHECK_AHEAD = 0.75


def _started(_task: luigi.Task) -> None:
    """luigi starts a step: in an attempt forked as a spare, the first tells its worker (:func:`.spares.started`)."""
    started()


class Likely(NamedTuple):
    """The chain file a spare executes ahead: that of the run its worker claimed last, as it was then; and that run's
    task and parameters, which the spare makes (a luigi task's making has no effect beyond the task: the API makes
    one for each submission), so that what the attempt will touch to make its own is set up."""

    path: str
    chain_type: str
    chain: str
    stamp: Stamp
    task: str
    params: tuple[tuple[str, str], ...]

    @property
    def file(self) -> tuple[str, Stamp]:
        return self.path, self.stamp

    def rehearse(self, module: ModuleType) -> None:
        rehearse(module, self.task, dict(self.params))


#: a run's fields, in the order a hand-over sends their values (:func:`handed`), and their values' getter: one call
#: in C, where a generator of ``getattr`` over the 28 fields made :func:`handed` take ~4.6 µs of the worker's loop per
#: claim (now ~2.6)
_RUN_FIELDS = tuple(f.name for f in fields(Run))
_RUN_VALUES = operator.attrgetter(*_RUN_FIELDS)
_STATE = _RUN_FIELDS.index("state")


def handed(run: Run, likely: Likely | None) -> bytes:
    """What a spare is handed: its run, as the values of its fields (its state's as its value), and its worker's
    :class:`Likely`, as plain values too. The run itself pickled made its spare look up three classes by their
    module's name, build an enum and set thirty fields by name: ~86,000 instructions of its path to ``run()`` (its
    values: ~42,000, :func:`given_run`), and ~66,000 of the worker's loop to make it (its values: ~42,000)."""
    values = _RUN_VALUES(run)
    return pickle.dumps(
        (values[:_STATE] + (run.state.value,) + values[_STATE + 1 :], tuple(likely) if likely is not None else None)
    )


def given_run(given: bytes) -> tuple[Run, Likely | None]:
    """The run and :class:`Likely` that :func:`handed` made into ``given``: the run made as unpickling makes an
    object (its fields set on a new instance, its ``__init__`` not called: they are those of a run made before)."""
    values, likely = pickle.loads(given)
    run: Run = object.__new__(Run)
    state = dict(zip(_RUN_FIELDS, values, strict=True))
    state["state"] = RunState(state["state"])
    run.__dict__.update(state)
    return run, Likely._make(likely) if likely is not None else None


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
    #: readable once the child has exited (None where the kernel cannot say: :func:`nectar.wakeup.exits`); made once
    #: per process, kept with it while it takes run after run, as is its ``/proc`` stat (:attr:`Spare.stat`)
    exited: int | None = None
    stat: int | None = None
    #: its spare's socket, on which it says that its first step started and that it ended its run and stays (None
    #: once it closed its end); when its run was claimed; whether its first step started, or no fork waits for that
    #: (it was not asked to say it: :meth:`~nectar.spares.Spares.short`)
    channel: socket.socket | None = None
    claimed_at: float = 0.0
    started: bool = False
    #: the runs its process executed before this one
    runs_done: int = 0
    #: the grace of its attempt from when the parent saw it was no longer the child's (cancelled or reclaimed)
    disowned: Grace | None = None
    #: its process closed its socket with its run unread: it died before its attempt began
    unread: bool = False
    #: its run's chain file as the claim found it (one stat): the file its process executes ahead if it stays
    likely: Likely | None = None


def wait_status(exit: os.waitid_result) -> int:
    """The wait status (as :func:`os.waitpid` answers it) of a process's exit as :func:`os.waitid` tells it."""
    if exit.si_code == os.CLD_EXITED:
        return (exit.si_status & 0xFF) << 8
    return exit.si_status | (0x80 if exit.si_code == os.CLD_DUMPED else 0)


def _remove_staged(pid: int) -> None:
    """Remove the files the dead attempt process ``pid`` staged for S3 and never uploaded (:func:`remove_staged`),
    said at WARNING: luigi's atomic S3 file is written whole on the local disk first, then uploaded, and one killed
    in between was left there (the size of what it wrote, each)."""
    try:
        removed = remove_staged(pid)
    except OSError as exc:  # a temporary folder that cannot be read: left as before
        logger.debug("could not look for what process %d staged for S3: %s", pid, exc)
        return
    if removed:
        logger.warning("removed %d file(s) the dead attempt process %d staged for S3: %s", len(removed), pid, removed)


class Executor:
    """Claims due PENDING runs and executes up to ``concurrency`` of them at once, each in a spare it hands the run
    (a child process that may take run after run), until it is stopped (:meth:`serve_forever`, :meth:`stop`)."""

    def __init__(
        self,
        settings: Settings,
        concurrency: int = 1,
        runs: RunStore | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.runs = runs or open_run_store(settings)
        #: whether it opened its registry itself (closed when it stops), not given one its caller closes
        self._opened_runs = runs is None
        self.scheduler = scheduler_of(settings)
        self.name = process_name()
        self.children: dict[int, Child] = {}
        self.spares = Spares(
            self._prepare,
            self._execute_given,
            settings.spare_idle,
            runs_per_process=settings.runs_per_process,
            max_rss_mb=settings.process_max_rss_mb,
            handed=lambda: [child.channel for child in self.children.values() if child.channel is not None],
            give_back=self._give_back,
        )
        self.shutdown = Shutdown(settings.drain_grace)
        #: called at each stop request, before the executor's own (what runs beside it stops with it)
        self.on_stop = on_stop
        self._watched = 0.0
        #: its node's clock compared with the registry's, as it starts and now and then (a warning when off)
        self._clock_checked = ClockCheck(self.runs, settings.lease_timeout, settings.heartbeat_interval)
        self._scheduler_seen: tuple[float, bool] = (0.0, True)
        #: when the store's room was last asked, and what it said then (None: room)
        self._room_seen: tuple[float, str | None] = (0.0, None)
        #: by chain file: its stamp when it was last compiled ahead here
        self._compiled: dict[str, Stamp | None] = {}
        #: the chain file the spares forked from now on execute ahead (None: none)
        self._likely: Likely | None = None
        #: the chain files (as they were: path, stamp) that a spare could not execute ahead: not tried again
        self._not_ahead: set[tuple[str, Stamp]] = set()
        self._warmed = False
        #: the process whose registry connections a spare's setup opened and checked (:meth:`_prepare`; 0: none yet)
        self._checked = 0
        #: readable when a signal came (a stop): set by serve_forever, in the main thread
        self._signalled: int | None = None
        #: whether a run may be due: not since a look found none, until the registry tells of a run queued, or the
        #: PENDING run due first is due (a retry's delay ends unannounced: :attr:`_due_at`); a pass woken by a
        #: child, a spare or a timeout alone (an attempt's start or end, a spare ready) then does not look for one
        self._work_may_wait = True
        #: when the PENDING run due first is due, as read when a look last found none (None: none was PENDING)
        self._due_at: float | None = None
        #: when a look last found no run due (monotonic)
        self._found_none_at = 0.0
        #: seconds after that the loop looks again though nothing told of a run (:data:`LOOK_ANYWAY`)
        self.look_anyway = LOOK_ANYWAY
        #: whether its start line ("worker N: k slot(s), registry R") is said, or not to be said: set False by
        #: serve_forever, said at the end of the first pass of the loop, once the worker has read its registry and can
        #: claim; a caller waiting for the line (tests/helpers/console.py's started_worker) finds the registry read
        self._start_said = True

    def warm(self) -> None:
        """Before the first spare is forked, not while idle: what every attempt would import (or load) itself; then
        all the worker holds leaves its collector's sight (:func:`~nectar.spares.freeze_held`)."""
        if self._warmed:
            return
        self._warmed = True
        import multiprocessing.queues  # noqa: F401  (every luigi.build makes a multiprocessing queue)
        import multiprocessing.synchronize  # noqa: F401

        if self.settings.store_kind == "s3":  # a local store's attempt imports boto3 only if its chain does
            import luigi.contrib.s3  # noqa: F401  (boto3, for the store's S3 targets)

            from nectar.stores.s3 import load_s3_models

            load_s3_models()  # no credentials resolved, no connection: each attempt's client resolves its own
        with contextlib.suppress(KeyError):  # none: luigi leaves the user out of a worker's info
            worker_user()  # luigi names a worker's user: the password database read here once, for every attempt
        build.prepare(self.settings.scheduler_url)  # luigi's [core] and [worker] settings, read once for every attempt
        quiet_luigi()  # and its logging set up, as each attempt leaves it (luigi's own handler gone)
        program_errors_keep_environment()  # a failed program's text without the worker's environment, for every attempt
        on_start("worker", _started)  # an attempt tells its worker (a spare's socket), once the step is recorded
        freeze_held()

    def stop(self, *_: Any) -> None:
        """First call: drain (stop claiming, let attempts finish for ``drain_grace``). Again, or when the
        ``nectar serve`` that started this worker is gone: interrupt them now (:class:`~nectar.shutdown.Shutdown`).
        Each call calls ``on_stop`` first."""
        if self.on_stop is not None:
            self.on_stop()
        self.shutdown.request()

    @property
    def stopping(self) -> bool:
        return self.shutdown.asked

    def _running(self) -> list[str]:
        return [child.run.id for child in self.children.values()]

    def _prepare(self) -> tuple[Build | None, bytes]:
        """In a spare: what an attempt needs before it knows its run (its luigi build, its registry connection, its
        likely chain executed ahead), and what the spare says once it is set up."""
        made = None
        standby.keep(standby.ATTEMPT_THREADS)  # once per process: the threads its attempts hand work to
        main_signals.watch()  # a signal another thread takes reaches its main thread all the same (set again each run)
        try:
            if self._checked != forks.pid():  # its connections open: a process taking another run has them already
                self.runs.check()
                self._checked = forks.pid()
            secret = scheduler_secret(self.settings)
            made = Build(self.settings.scheduler_url, process_name(), secret, kept_scheduler(self.settings))
        except Exception:  # the attempt will make them again, and fail with the reason if it must
            logger.exception("a spare attempt process could not prepare its luigi build")
        make_ahead(self.settings.live_logs_dir)  # its first step's live logs: their inodes made off its start
        likely = self._likely
        if likely is None or likely.file in self._not_ahead:
            return made, READY
        ahead = load_ahead(Path(likely.path), likely.chain_type, likely.chain, AHEAD_BUDGET, likely.rehearse)
        if not ahead:  # nor tried again by this process, if it takes another run (its worker learns it as it claims)
            self._not_ahead.add(likely.file)
        return made, AHEAD if ahead else NOT_AHEAD

    def _execute_given(self, given: bytes, build: Build | None) -> tuple[int, bool]:
        """In a spare handed a run (and its :class:`Likely`, which its worker made as it claimed it): execute it; the
        spare's exit code, and whether the attempt ended by its own hand. Its chain file is the one this process
        executes ahead if it takes another run (:meth:`_prepare`): as its bytes are then, whatever its stamp said."""
        run, likely = given_run(given)
        ending = attempt(self.settings, self.runs, run, build)
        if build is not None and build.client is not None:
            build.client.settle()  # kept, with its connection, for this process's next run
        self._likely = likely  # its chain file as its worker found it at the claim (no stat here)
        return 0 if ending.state == RunState.DONE else 2, ending.clean

    @staticmethod
    def _likely_after(run: Run, path: Path) -> Likely | None:
        """The chain file likely needed after ``run`` (the file at ``path``, as it is now), or None if it is gone."""
        stamp = file_stamp(os.fspath(path))
        params = tuple(run.params.items())
        return Likely(str(path), run.chain_type, run.chain, stamp, run.task, params) if stamp else None

    def _claim(self, spare: Spare) -> bool:
        """Claim the next due run in the (ready) spare's name and hand it over; False when there was none."""
        run = self.runs.claim(process_name(spare.pid, spare.runs_done))
        if run is None:
            return False
        self.spares.take(spare)
        if spare.said == NOT_AHEAD and isinstance(spare.tag, Likely):  # its attempt executes that chain file itself
            self._not_ahead.add(spare.tag.file)
        path = chain_file(self.settings, run)
        likely = self._likely_after(run, path)  # the one stat of its chain file per run
        tell = self.spares.short(self.concurrency)  # a fork waits for its first step to start: it says when
        try:
            channel = hand_over(spare, handed(run, likely), tell)
        except OSError as exc:  # the spare died before it got the run: the attempt never began
            self._requeue_unbegun(run, f"its process was gone before it began ({exc})")
            spare.close_handles()
            self._forget(spare.pid)
            return True
        exits = spare.exited if spare.exited is not None else wakeup.exits(spare.pid)
        claimed = time.monotonic()
        child = Child(
            run, exits, spare.stat, channel, claimed, started=not tell, runs_done=spare.runs_done, likely=likely
        )
        self.children[spare.pid] = child
        logger.info("run %s of %s: attempt %d claimed", run.id, run.ref, run.attempt, extra={"run_id": run.id})
        self._compile_ahead(run, path, likely)
        return True

    def _compile_ahead(self, run: Run, path: Path, likely: Likely | None) -> None:
        """Compile the run's chain file here, if it changed, so that the attempts forked from now on find its code
        compiled (:func:`~nectar.catalog.loader.chain_code`); none of it runs here. Its stamp (``likely``'s, the
        claim's stat) tells whether it changed since it was last compiled here; an attempt compiles what its bytes
        say regardless."""
        if likely is not None and self._compiled.get(likely.path) == likely.stamp:  # its path: the claim's, as a str
            self._likely = likely
            return
        self._compiled[str(path)] = likely.stamp if likely is not None else None
        self._likely = None
        try:
            chain_code(path, run.chain_type, run.chain)
        except Exception:  # a chain that does not compile: its attempt says why
            return
        self._likely = likely

    def _give_back(self, name: str) -> None:
        """In a spare with no run to begin, its worker gone (or letting it go): put back in the queue, uncounted, what
        was claimed in its ``name`` (a run handed over and not begun, or claimed and never handed over). A registry
        that does not answer leaves the run to the reclaim of its lease (counted then), as any lost attempt."""
        try:
            given_back = self.runs.requeue_unbegun(name)
        except RegistryUnavailable as exc:
            logger.warning("could not put back what was claimed for process %s: %s", name, exc)
            return
        for run_id in given_back:
            logger.warning(
                "run %s: its worker died before its attempt began in process %s; requeued",
                run_id,
                name,
                extra={"run_id": run_id},
            )

    def _requeue_unbegun(self, run: Run, why: str) -> None:
        """Put back in the queue, uncounted, a run whose attempt never began: its process died before it had the run
        (its luigid tasks untouched: nothing to release)."""
        logger.warning("run %s: %s; requeued", run.id, why, extra={"run_id": run.id})
        self.runs.requeue(run.id, run.attempt)

    @staticmethod
    def _forget(pid: int) -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _owned(self, run: Run) -> bool:
        return self.runs.owns(run.id, run.attempt)

    def _reap(self, block: bool = False) -> None:
        """Handle the end of each attempt that ended: its process exited (or died), or said it ended its run and
        stays (a spare again: :meth:`~nectar.spares.Spares.returned`); both alike (:meth:`_ended`)."""
        for pid, child in list(self.children.items()):
            stays = self._listen(child)
            if stays is not None:
                self._ended(pid, child, stays << 8, exited=False)  # the wait status of an exit with that code
                continue
            # its exit looked at, not reaped: until it is, its pid, and so its group's id, is ours, never another's
            # process's (what it left in its group is killed by that id as its end is handled)
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG))
            if exited is None:
                continue
            status = wait_status(exited)
            try:
                self._ended(pid, child, status, exited=True)
            finally:
                if status != 0:  # killed, or crashed: it may have left files it staged for S3
                    _remove_staged(pid)  # before its reaping: its pid is no other process's yet
                os.waitpid(pid, 0)

    @staticmethod
    def _listen(child: Child) -> int | None:
        """Read what the attempt said on its socket: that its first step started; that it ended its run and stays
        (its exit code answered; None until it does). A closed end is left to its exit, noting whether its run was
        left unread."""
        while child.channel is not None:
            said = heard(child.channel)
            if said is None:
                return None
            what, code = said
            if what == ENDED:
                return code
            if what == STARTED:
                child.started = True
            else:
                child.unread = what == UNREAD
                child.channel.close()
                child.channel = None
        return None

    def _ended(self, pid: int, child: Child, status: int, exited: bool) -> None:
        """The attempt of ``child`` ended with the wait status ``status``: its process exited (``exited``), or stays
        for another run, taken back among the spares. An outcome the attempt did not record is recorded here."""
        del self.children[pid]
        if exited:
            wakeup.close_all(child.exited, child.stat)
        if exited and child.channel is not None:
            self._listen(child)  # its end closed with its process: whether it read its run (what it said is moot)
            if child.channel is not None:  # its end outlives it (a process it forked): is its run still there?
                child.unread = unread_by_peer(child.channel)
                child.channel.close()
        elif not exited:
            assert child.channel is not None
            stat, exits = child.stat, child.exited  # its process's, kept for its next run
            self.spares.returned(pid, child.channel, child.runs_done + 1, child.likely, stat, exits)
            if status == 0:  # it stays having recorded its run DONE itself: nothing is left to record or release
                return
        run = child.run
        if not self._owned(run):  # the child recorded its outcome, or the attempt was taken from it
            self._end_stopped(pid, run, exited)
            return
        if child.unread:  # its process died between the claim and its run's read: the run is not charged for it
            end_group(pid)  # nor does what it forked before (holding its socket, maybe) outlive it
            self._requeue_unbegun(run, f"its process {pid} died before it read its run")
            return
        if self.stopping:
            self.runs.requeue(run.id, run.attempt)
            reason = "interrupted: the worker stopped; the run was requeued"
            logger.warning("run %s of %s requeued: its worker was stopped", run.id, run.ref, extra={"run_id": run.id})
        else:
            how = (
                f"killed by signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"exited with code {os.WEXITSTATUS(status)}"
            )
            reason = f"worker process {how} during attempt {run.attempt}"
            state = self.runs.fail(run.id, run.attempt, run.task, reason)
            then = {RunState.PENDING: "it will be retried", RunState.FAILED: "the run FAILED"}.get(
                state or RunState.CANCELLED, ""
            )
            logger.warning(  # a death no one asked for: the one sign of it besides the next attempt
                "run %s of %s: attempt %d's process %d %s; %s",
                run.id,
                run.ref,
                run.attempt,
                pid,
                how,
                then or "it was no longer its attempt",
                extra={"run_id": run.id},
            )
        release(self.runs, run, reason, self.scheduler, counted=not self.stopping)  # requeued: its steps did not fail

    def _end_stopped(self, pid: int, run: Run, exited: bool = True) -> None:
        """If ``run`` was cancelled (or its attempt timed out), now that the attempt of the process ``pid`` has ended:
        kill what it left in its process group (its task's own subprocesses; one that stays for another run left
        none), and tell luigid its steps will not run (nothing undoes it; a timed-out attempt killed before it could
        say so itself)."""
        now = self.runs.get(run.id)
        if now is not None and (now.state == RunState.CANCELLED or (timed_out(now) and now.attempt == run.attempt)):
            if exited:
                self._kill(pid, signal.SIGKILL)
            release(self.runs, now, now.error or "cancelled", self.scheduler)

    def _watch(self) -> None:
        """Reclaim lost attempts (anyone's) and kill children whose attempt is no longer theirs."""
        now = time.monotonic()
        if now - self._watched < self.settings.heartbeat_interval:
            return
        self._watched = now
        reclaim(self.runs, self.settings.lease_timeout, self.scheduler)
        self._clock_checked()
        for pid, child in self.children.items():
            if child.disowned is None and not self._owned(child.run):
                child.disowned = Grace(pid)
            elif child.disowned is not None and child.disowned.over():
                self._kill(pid, signal.SIGKILL)

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _scheduler_up(self, ahead: bool = False) -> bool:
        """Whether luigid answers (asked at most once per heartbeat interval; ``ahead``, once its answer is
        :data:`CHECK_AHEAD` of that old); runs wait while it does not."""
        if self.scheduler is None:
            return True
        seen, up = self._scheduler_seen
        if time.monotonic() - seen < self.settings.heartbeat_interval * (CHECK_AHEAD if ahead else 1.0):
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
        if now_up and (not up or seen == 0.0):  # luigid (re)started, maybe from a state saved as a crash began
            release_lost_in_luigid(self.scheduler)
        self._scheduler_seen = (time.monotonic(), now_up)
        return now_up

    def _store_has_room(self) -> bool:
        """Whether the store has room for a run's files (:meth:`~nectar.stores.base.TargetStore.no_room`, asked at
        most once per heartbeat interval, only as a run could be claimed); runs wait while it has none: each would meet
        the full disk and be put back (:mod:`nectar.attempt`)."""
        seen, full = self._room_seen
        if time.monotonic() - seen < self.settings.heartbeat_interval:
            return full is None
        try:
            now_full = get_store(self.settings).no_room()
        except Exception:  # the store cannot be asked: its check (/healthz) and the runs say why
            now_full = None
        if now_full is not None and full is None:
            logger.warning("not claiming runs until the store has room: %s", now_full)
        elif now_full is None and full is not None:
            logger.warning("the store has room again: claiming runs")
        self._room_seen = (time.monotonic(), now_full)
        return now_full is None

    def _registry_answers(self) -> bool:
        try:
            self.runs.check()
        except Exception:  # any failure of the probe means: not yet
            return False
        return True

    def _serve_once(self) -> None:
        """Reap, watch, claim what the free slots can take with the ready spares, keep the spares wanted (a fork at
        most, off the claims' path), then wait a little for more work, or for a spare to be ready."""
        self._reap()
        self._watch()
        blocked = False  # a free slot and no spare ready for it
        due_at: float | None = None
        claimed = False  # a run, in this pass: a claim's write is made only once a read found another due
        while (
            self._work_may_wait
            and len(self.children) < self.concurrency
            and not self.stopping
            and self._scheduler_up()
            and self._store_has_room()
        ):
            if claimed:  # whether another run is due, in one read (none, most often), before a claim's write
                due_at = self.runs.next_due()
                if due_at is None or due_at > time.time():
                    self._found_none(due_at)
                    break
            spare = self.spares.ready()
            if spare is None:
                blocked = True
                break
            if not self._claim(spare):
                self._found_none(self.runs.next_due())
                break
            claimed = True
            self.spares.wanted()
        if blocked:
            if not claimed:  # one read: whether a run is due now, and if none is, when one will be (else: read above)
                due_at = self.runs.next_due()
            if due_at is not None and due_at <= time.time():
                self.spares.wanted()  # a run waits for a spare: fork them (idle until now) or wait for one to be ready
            else:
                self._found_none(due_at)
        if not claimed and not self.stopping:
            self._scheduler_up(ahead=True)  # asked in a pass that claims nothing: a claim seldom waits for luigid
        if not self.stopping:
            if self.spares.busy:
                self.warm()
            forked = self.spares.keep(self.concurrency, hold=self._hold())
            if forked is not None:
                forked.tag = self._likely
        if not self._start_said:  # once it has read its registry (lost runs reclaimed, a due run looked for)
            self._start_said = True
            logger.info(
                "worker %s: %d slot(s), registry %s", self.name, self.concurrency, self.settings.registry_location
            )
        self._sleep(blocked)

    def _found_none(self, due_at: float | None) -> None:
        """A look found no run due: none is looked for until the registry tells of one queued, or until ``due_at``,
        when the PENDING run due first is due (None: none is PENDING), as read by the look."""
        self._work_may_wait = False
        self._due_at = due_at
        self._found_none_at = time.monotonic()

    def _hold(self) -> bool:
        """Whether an attempt claimed less than :data:`START_WAIT` seconds ago has yet to start its first step: the
        last spare wanted is not forked meanwhile (:meth:`Spares.keep`). What it says is read by :meth:`_reap`."""
        now = time.monotonic()
        return any(not child.started and now - child.claimed_at < START_WAIT for child in self.children.values())

    def _sleep(self, blocked: bool) -> None:
        """Until there may be something to do: an attempt's process exits, starts its first step or ends its run and
        stays, a spare is ready (or dies), or, if a slot could take it now, a run is queued; at most
        ``worker_poll_interval`` seconds (leases, luigid, idle spares), or, idle, until its next look of its own
        (:meth:`_idle_for`), no longer than a spare's fork is held back
        (:meth:`_hold`), nor than the PENDING run due first waits for its time (:attr:`_due_at`). A run queued, or one
        due, makes the next pass look for one (:attr:`_work_may_wait`), as does :attr:`look_anyway` seconds without
        a look."""
        exits = [child.exited for child in self.children.values()]
        timeout = max(self.settings.worker_poll_interval, self._idle_for())
        if None in exits:  # the kernel cannot say when this one exits: look again soon
            timeout = min(timeout, REAP_INTERVAL)
        fds = [fd for fd in exits if fd is not None]
        now = time.monotonic()
        for child in self.children.values():
            if child.channel is not None:  # it starts its first step, or ends its run and stays
                fds.append(child.channel.fileno())
            if not child.started and not self.stopping and now - child.claimed_at < START_WAIT:  # its hold ends then
                timeout = max(0.0, min(timeout, child.claimed_at + START_WAIT - now))
        if not self._work_may_wait and self._due_at is not None:  # a retry's delay ends then
            timeout = max(0.0, min(timeout, self._due_at - time.time()))
        if self._signalled is not None:  # a stop wakes the sleep, not its timeout's end
            fds.append(self._signalled)
        if not self.stopping:  # a stopping worker reads its spares no more (it lets them go once drained)
            fds += self.spares.fds(readiness=len(self.children) < self.concurrency)
        if self.stopping or len(self.children) >= self.concurrency or (blocked and len(self.spares)):
            wakeup.readable(fds, timeout)  # a queued run could not be claimed before one of these anyway
        elif self.runs.wait_for_work(timeout, fds):
            self._work_may_wait = True
        if self._due_at is not None and time.time() >= self._due_at:
            self._work_may_wait = True
        if time.monotonic() - self._found_none_at >= self.look_anyway:  # a word lost to a fault: a look all the same
            self._work_may_wait = True
        if self._signalled is not None:
            wakeup.drain(self._signalled)

    def _idle_for(self) -> float:
        """Seconds an idle worker (no attempt, no spare, none wanted, not stopping) may sleep before its loop has
        something of its own to do: its next watch of the leases (:meth:`_watch`), its next ask whether luigid
        answers (:meth:`_scheduler_up`, ahead), its next look for a run though nothing told of one
        (:attr:`look_anyway`); what it waits for besides (a run queued, a signal) wakes it. 0 for a worker that is
        not idle: it sleeps at most ``worker_poll_interval``, as its attempts and spares want. An idle ``nectar
        serve``'s worker woke every 0.05 s (20 times a second) to find that none of these was due."""
        if self.children or len(self.spares) or self.spares.busy or self.stopping:
            return 0.0
        beat = self.settings.heartbeat_interval
        due = [self._watched + beat]
        if self.scheduler is not None:
            due.append(self._scheduler_seen[0] + beat * CHECK_AHEAD)
        if not self._work_may_wait:
            due.append(self._found_none_at + self.look_anyway)
        return min(due) - time.monotonic()

    def serve_forever(self) -> None:
        """Claim and execute runs until SIGTERM, SIGINT or SIGHUP; then drain, interrupt and requeue."""
        load_luigi_config(self.settings.luigi_config)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.stop)
        self._signalled = wakeup.signals()
        self._start_said = False  # said by the first pass that reads the registry (_serve_once)
        registry_down = False
        while not self.shutdown.asked or (self.children and self.shutdown.draining()):
            self.shutdown.announce(self._running())
            try:
                self._serve_once()
            except RegistryUnavailable as exc:  # PostgreSQL restarting: what was not recorded, leases recover
                if not registry_down:
                    logger.warning("the run registry is unavailable, retrying: %s", exc)
                registry_down = True
                self._work_may_wait = True
                time.sleep(max(self.settings.worker_poll_interval, 0.5))
                continue
            if registry_down and self._registry_answers():
                logger.warning("the run registry answers again")
                registry_down = False
        self.shutdown.announce(self._running())
        self.spares.close()
        self.shutdown.interrupting(self._running())
        for pid in self.children:  # the drain is over: interrupt what still runs (it requeues itself)
            self._kill(pid, signal.SIGTERM)
        graces = {pid: Grace(pid) for pid in self.children}
        while self.children and not all([graces[pid].over() for pid in self.children]):
            self._reap()
            time.sleep(self.settings.worker_poll_interval)
        for pid in self.children:
            self._kill(pid, signal.SIGKILL)
        self._reap(block=True)
        self.spares.close()  # those that ended their run meanwhile and stayed
        if self._signalled is not None:
            wakeup.no_signals()  # the descriptor closed
            self._signalled = None
        self.close()
        logger.info("worker %s stopped", self.name)

    def close(self) -> None:
        """End its use of the registry it opened (:meth:`RunStore.close`), not of one it was given (its caller's)."""
        if self._opened_runs:
            self.runs.close()
