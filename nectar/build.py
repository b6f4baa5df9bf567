"""An attempt's ``luigi.build``, set up before its task is known.

Of the time between a claim and a task's ``run()``, ``luigi.build`` spends about 6 ms on what does
not depend on the task: reading its configuration (``[core]``, ``[worker]``), setting up its
logging, making its scheduler client and its worker. A spare attempt process makes a
:class:`Build` while it waits for a run; :meth:`Build.run` is then what is left of luigi's
``interface._schedule_and_run``: add the task, run the worker, summarise.

The luigi worker's id names the attempt's process (``nectar-<host>:<pid>``), so that whoever
reclaims a dead attempt can tell luigid which worker's tasks failed. It runs one step at a time,
in this process, unless the task asks for more (:mod:`nectar.parallel`).

With luigid, a build opens its connection to luigid ahead; luigi's ``add_worker`` is told after the
worker's first ``get_work``, its answer read later (:class:`~nectar.luigi_internals.Worker`). What the
attempt asks luigid while its chain file compiles is sent ahead on the attempt's own thread
(:meth:`~nectar.luigid.SchedulerClient.ask`), its answer read after: no second thread waits for the
GIL meanwhile.
"""

from __future__ import annotations

import functools
import logging
from contextlib import ExitStack, nullcontext
from typing import Any

import luigi.interface
import luigi.scheduler
import luigi.worker
from luigi.setup_logging import InterfaceLogging

from nectar import parallel, step_locks
from nectar.config import get_settings
from nectar.luigi_internals import (
    RunResult,
    Worker,
    luigi_logging_set_up,
    new_worker,
    schedule_and_run,
    worker_config,
)
from nectar.luigid import LuigidRPC, SchedulerClient, kept
from nectar.task import make_folders_ahead, record_every_task

logger = logging.getLogger(__name__)
#: luigi's settings of a build (``[core]``, ``[worker]``), by where its scheduler is, read ahead (:func:`prepare`)
_PREPARED: dict[str | None, tuple[luigi.interface.core, luigi.worker.worker]] = {}


def _core(scheduler_url: str | None) -> luigi.interface.core:
    where = {"scheduler_url": scheduler_url} if scheduler_url else {"local_scheduler": True}
    return luigi.interface.core(no_lock=True, workers=1, **where)


def prepare(scheduler_url: str | None) -> None:
    """Read luigi's settings of a build against ``scheduler_url`` now, for every :class:`Build` made from now on in
    this process and in the processes it forks (luigi's configuration as it is now stands for them), and set up
    luigi's logging as a build does (:func:`_set_up`).

    A worker calls it before it forks its attempts: each attempt would read them again, in a process that touches
    luigi's configuration for the first time, 4.4 ms of its CPU (of about 25 for a trivial run); and set up luigi's
    logging (once per process): ~0.3 ms and ~55 pages copied of an attempt that makes its build and logs.
    """
    core = _core(scheduler_url)
    _PREPARED[scheduler_url] = (core, worker_config())
    _set_up(core)


def _set_up(env: luigi.interface.core) -> None:
    """What a build sets up in its process before it runs: luigi's logging (once per process: luigi's
    ``InterfaceLogging``, not asked again once it is set up: each later call made an INFO record, "logging already
    configured", ~600 bytecodes of each spare's set-up, which no fresh process's one build makes), with luigi's
    "luigi" logger at luigi.cfg's level too, before luigi says at INFO how it configured logging; and a plain luigi
    task's params.txt and logs recorded, as a NectarTask's."""
    luigi_log = logging.getLogger("luigi")
    if logging.getLevelName(luigi_log.level) != env.log_level:  # a change clears every logger's cache: not per build
        luigi_log.setLevel(env.log_level)
    if not luigi_logging_set_up():  # else luigi's setup would only make a record saying so, at each build
        InterfaceLogging.setup(env)
    record_every_task()


def luigi_worker_id(process: str) -> str:
    """The luigi worker id of the attempt executing in ``process`` (``host:pid``)."""
    return f"nectar-{process}"


class Build:
    """One ``luigi.build`` of one task, against luigid at ``scheduler_url`` (luigi's local scheduler if None).

    ``client`` (with luigid) is the attempt's :class:`~nectar.luigid.SchedulerClient`, its connection opened
    ahead on this thread. luigi's worker talks to luigid through the process's :class:`~nectar.luigid.LuigidRPC`,
    kept from one build to the next (:func:`~nectar.luigid.kept`): its connection too.
    """

    def __init__(
        self, scheduler_url: str | None, process: str, secret: str | None = None, client: SchedulerClient | None = None
    ) -> None:
        prepared = _PREPARED.get(scheduler_url)
        self.env = prepared[0] if prepared is not None else _core(scheduler_url)
        #: luigi's [worker] settings read ahead (None: its worker reads them)
        self._settings: luigi.worker.worker | None = prepared[1] if prepared is not None else None
        _set_up(self.env)
        self.scheduler: luigi.scheduler.Scheduler | LuigidRPC
        self.client = client
        if scheduler_url:
            self.scheduler = kept(LuigidRPC, scheduler_url, None, secret)  # the process's, from one run to the next
            self.scheduler.connections.open()
            if client is not None:
                client.connections.open()  # on the attempt's own thread, which asks luigid ahead with it
        else:
            self.scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
        self.worker_id = luigi_worker_id(process)
        self.worker = self._worker(self.env.workers)

    @property
    def none_disabled(self) -> bool:
        """Whether luigid, at its last grant to this process (its kept client's last ``get_work``), said it held no
        DISABLED task."""
        return isinstance(self.scheduler, LuigidRPC) and self.scheduler.holds_disabled is False

    def policies(self) -> dict[str, dict[str, Any]]:
        """The retry policy of each task its worker scheduled, by task id, as luigi's worker sends it to luigid
        (:meth:`~nectar.luigi_internals.Worker.policies`): what the attempt sends with its own FAILED of a step."""
        return self.worker.policies() if isinstance(self.worker, Worker) else {}

    def _worker(self, processes: int, **config: str) -> luigi.worker.Worker:
        return new_worker(self.scheduler, self.worker_id, processes, self._settings, **config)

    def run(self, task: luigi.Task) -> RunResult:
        """Schedule ``task`` (and what it requires) and run what is not done; once per Build.

        Up to :func:`~nectar.parallel.step_workers` steps run at once: one in this process, with the worker made
        ahead; more each in a process of its own, with a worker made now (:mod:`nectar.parallel`).
        """
        try:
            workers = parallel.refuse_invalid_workers(task, get_settings().task_workers)
            if workers > 1:
                self.worker = self._worker(workers, task_process_context=parallel.CONTEXT)
            local = not isinstance(self.scheduler, LuigidRPC)  # no luigid keeps runs sharing a step apart: locks do
            with step_locks.local_builds(get_settings().data_dir) if local else nullcontext(), ExitStack() as forks:
                if workers > 1:
                    forks.enter_context(parallel.forked_steps())
                elif isinstance(self.worker, Worker):  # a step luigi forks for all that (its worker_timeout's)
                    self.worker.forking = parallel.forks_on_demand(forks)
                return schedule_and_run(self.worker, task, self.env, self._folders_ahead)
        finally:
            if isinstance(self.scheduler, LuigidRPC):
                try:
                    self._send_held(self.scheduler)
                finally:
                    self.scheduler.settle()  # its connection kept for the process's next build, in step

    def _folders_ahead(self, worker: luigi.worker.Worker) -> None:
        """With luigid, the folders of the one step the worker will run (``Worker.only_step``) made while luigid
        answers the ``get_work`` that grants it (:func:`~nectar.task.make_folders_ahead`: its params.txt's text too),
        and luigi's task process of it (:meth:`~nectar.luigi_internals.Worker.task_process_ahead`): the thread would
        only wait meanwhile. A run of several steps makes each one's as it starts, as before: the folder of a step that
        may never run (its dependency fails) is not made."""
        meanwhile = self.scheduler.meanwhile if isinstance(self.scheduler, LuigidRPC) else None
        step = worker.only_step() if isinstance(worker, Worker) else None
        if meanwhile is not None and step is not None and isinstance(worker, Worker):
            meanwhile(functools.partial(make_folders_ahead, step))
            meanwhile(functools.partial(worker.task_process_ahead, step))

    @staticmethod
    def _send_held(scheduler: LuigidRPC) -> None:
        """What luigi's worker told luigid last, if its run did not end (it raised, or was interrupted)."""
        try:
            scheduler.send_held()
        except Exception:  # luigid is gone: it learns of the attempt's end as of any lost worker's
            logger.warning("could not tell luigid the last state of the attempt's steps", exc_info=True)
