"""An attempt's ``luigi.build``, set up before its task is known.

Of the time between a claim and a task's ``run()``, ``luigi.build`` spends about 6 ms on what does
not depend on the task: reading its configuration (``[core]``, ``[worker]``), setting up its
logging, making its scheduler client and its worker. A spare attempt process makes a
:class:`Build` while it waits for a run; :meth:`Build.run` is then what is left of luigi's
``interface._schedule_and_run``: add the task, run the worker, summarise.

The luigi worker's id names the attempt's process (``nectar-<host>:<pid>``), so that whoever
reclaims a dead attempt can tell luigid which worker's tasks failed.
"""

from __future__ import annotations

import luigi.interface
import luigi.scheduler
import luigi.worker
from luigi.execution_summary import LuigiRunResult
from luigi.setup_logging import InterfaceLogging

from nectar.scheduler import LuigidRPC
from nectar.task import record_every_task


def luigi_worker_id(process: str) -> str:
    """The luigi worker id of the attempt executing in ``process`` (``host:pid``)."""
    return f"nectar-{process}"


class Build:
    """One ``luigi.build`` of one task, against luigid at ``scheduler_url`` (luigi's local scheduler if None)."""

    def __init__(self, scheduler_url: str | None, process: str) -> None:
        where = {"scheduler_url": scheduler_url} if scheduler_url else {"local_scheduler": True}
        self.env = luigi.interface.core(no_lock=True, workers=1, **where)
        InterfaceLogging.setup(self.env)
        record_every_task()  # a plain luigi task's params.txt and logs, as a NectarTask's
        self.scheduler: luigi.scheduler.Scheduler | LuigidRPC
        if scheduler_url:
            self.scheduler = LuigidRPC(scheduler_url)
            self.scheduler.connections.open()
        else:
            self.scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
        self.worker = luigi.worker.Worker(
            scheduler=self.scheduler, worker_id=luigi_worker_id(process), worker_processes=self.env.workers
        )

    def run(self, task: luigi.Task) -> LuigiRunResult:
        """Schedule ``task`` (and what it requires) and run what is not done; once per Build."""
        try:
            with self.worker:
                added = self.worker.add(task, self.env.parallel_scheduling, self.env.parallel_scheduling_processes)
                ran = self.worker.run()
        finally:
            if isinstance(self.scheduler, LuigidRPC):
                self.scheduler.close()
        return LuigiRunResult(self.worker, added and ran)
