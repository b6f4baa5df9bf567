"""An attempt's ``luigi.build``, set up before its task is known.

Of the time between a claim and a task's ``run()``, ``luigi.build`` spends about 6 ms on what does
not depend on the task: reading its configuration (``[core]``, ``[worker]``), setting up its
logging, making its scheduler client and its worker. A spare attempt process makes a
:class:`Build` while it waits for a run; :meth:`Build.run` is then what is left of luigi's
``interface._schedule_and_run``: add the task, run the worker, summarise.

The luigi worker's id names the attempt's process (``nectar-<host>:<pid>``), so that whoever
reclaims a dead attempt can tell luigid which worker's tasks failed. It runs one step at a time,
in this process, unless the task asks for more (:mod:`nectar.parallel`).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import luigi.interface
import luigi.scheduler
import luigi.worker
from luigi.execution_summary import LuigiRunResult
from luigi.setup_logging import InterfaceLogging

from nectar import parallel
from nectar.config import get_settings
from nectar.luigi_internals import new_worker, schedule_and_run
from nectar.luigid import LuigidRPC
from nectar.task import record_every_task


def luigi_worker_id(process: str) -> str:
    """The luigi worker id of the attempt executing in ``process`` (``host:pid``)."""
    return f"nectar-{process}"


class Build:
    """One ``luigi.build`` of one task, against luigid at ``scheduler_url`` (luigi's local scheduler if None)."""

    def __init__(self, scheduler_url: str | None, process: str, secret: str | None = None) -> None:
        where = {"scheduler_url": scheduler_url} if scheduler_url else {"local_scheduler": True}
        self.env = luigi.interface.core(no_lock=True, workers=1, **where)
        # luigi's "luigi" logger at luigi.cfg's level too, before luigi says at INFO how it configured logging
        logging.getLogger("luigi").setLevel(self.env.log_level)
        InterfaceLogging.setup(self.env)
        record_every_task()  # a plain luigi task's params.txt and logs, as a NectarTask's
        self.scheduler: luigi.scheduler.Scheduler | LuigidRPC
        if scheduler_url:
            self.scheduler = LuigidRPC(scheduler_url, secret=secret)
            self.scheduler.connections.open()
        else:
            self.scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
        self.worker_id = luigi_worker_id(process)
        self.worker = self._worker(self.env.workers)

    def _worker(self, processes: int, **config: str) -> luigi.worker.Worker:
        return new_worker(self.scheduler, self.worker_id, processes, **config)

    def run(self, task: luigi.Task) -> LuigiRunResult:
        """Schedule ``task`` (and what it requires) and run what is not done; once per Build.

        Up to :func:`~nectar.parallel.step_workers` steps run at once: one in this process, with the worker made
        ahead; more each in a process of its own, with a worker made now (:mod:`nectar.parallel`).
        """
        try:
            workers = parallel.refuse_invalid_workers(task, get_settings().task_workers)
            if workers > 1:
                self.worker = self._worker(workers, task_process_context=parallel.CONTEXT)
            with parallel.forked_steps() if workers > 1 else nullcontext():
                return schedule_and_run(self.worker, task, self.env)
        finally:
            if isinstance(self.scheduler, LuigidRPC):
                self.scheduler.close()
