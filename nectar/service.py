"""The library's front door: one object that submits runs and answers statuses and health.

``Nectar(settings)`` ties the catalog, the store, the run registry and the scheduler together;
the HTTP API and the CLI are thin layers over it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import luigi

from nectar.config import Settings, get_settings
from nectar.discovery import ChainCatalog, TaskInfo
from nectar.errors import QueueFull, RunNotFound
from nectar.keys import TargetKey
from nectar.runs import RetryPolicy, Run, RunState, RunStore, open_run_store
from nectar.scheduler import SchedulerClient
from nectar.status import JobStatus, job_status
from nectar.stores import TargetStore, get_store


@dataclass(frozen=True)
class Submission:
    """What a submit did: queued a new run, found one active, or found the output done."""

    key: TargetKey
    run: Run | None
    created: bool
    #: when the output already exists: its DONE status (with the download URL)
    status: JobStatus | None = None

    @property
    def done(self) -> bool:
        return self.run is None


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


#: dependencies without which nothing works; the others (luigid) only delay runs
ESSENTIAL = frozenset({"registry", "store"})

logger = logging.getLogger(__name__)


def retry_policy(task_cls: Any, settings: Settings) -> RetryPolicy:
    """A task's retry policy: its ``retries``, ``retry_delay`` and ``retry_backoff`` attributes, else the settings'."""

    def pick(name: str, default: float) -> float:
        value = getattr(task_cls, name, None)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else default

    return RetryPolicy(
        int(pick("retries", settings.retries)),
        float(pick("retry_delay", settings.retry_delay)),
        float(pick("retry_backoff", settings.retry_backoff)),
    )


class Nectar:
    """Catalog, store, registry and scheduler for one set of settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.catalog = ChainCatalog(self.settings.chains_dir)

    @functools.cached_property
    def runs(self) -> RunStore:
        return open_run_store(self.settings)

    @property
    def store(self) -> TargetStore:
        return get_store(self.settings)

    @functools.cached_property
    def scheduler(self) -> SchedulerClient | None:
        url = self.settings.scheduler_url
        return SchedulerClient(url, self.settings.scheduler_timeout) if url else None

    def store_for(self, task_cls: Any) -> TargetStore:
        return get_store(self.settings, getattr(task_cls, "store_kind", None))

    def submit(self, chain_type: str, chain: str, task: str, values: Mapping[str, Any]) -> Submission:
        """Queue a run of a task, unless its output exists or an identical run is active."""
        info = self.catalog.task(chain_type, chain, task)
        return self.submit_task(info, info.instantiate(values))

    def submit_task(self, info: TaskInfo, instance: luigi.Task) -> Submission:
        """Queue a run of ``instance`` (a task of ``info``), unless done or already active."""
        key = info.key_of(instance)
        store = self.store_for(info.cls)
        if store.exists(key):
            expiry = self.settings.url_expiry
            done = JobStatus(key, RunState.DONE.value, self.runs.latest(key.path), [], store.url(key, expiry), expiry)
            return Submission(key, None, False, done)
        run = Run.new(
            key.path,
            info.chain_type,
            info.chain,
            info.name,
            instance.to_str_params(),
            instance.task_id,
            retry_policy(info.cls, self.settings),
        )
        try:
            run, created = self.runs.submit(run, max_pending=self.settings.max_queue)
        except QueueFull as exc:
            raise QueueFull(str(exc), retry_after=self.settings.retry_after) from exc
        if created:
            logger.info("run %s of %s queued: %s", run.id, run.ref, key.path, extra={"run_id": run.id})
        return Submission(key, run, created)

    def run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id}")
        return run

    def cancel(self, run_id: str) -> Run:
        """Cancel a queued or running run: a running attempt is interrupted within a heartbeat interval.

        :raises RunNotFound: unknown id. :raises RunFinished: the run has already ended.
        """
        _, after = self.runs.cancel(run_id)
        return after

    def reclaim(self) -> int:
        """End the attempts whose worker is lost (no heartbeat within the lease); answer how many."""
        from nectar.attempt import release  # the worker side, loaded only when a lease ran out
        from nectar.executor import is_dead

        lost = self.runs.reclaim(self.settings.lease_timeout, dead=is_dead)
        for run in lost:
            logger.warning("run %s of %s: attempt %d lost (worker %s)", run.id, run.ref, run.attempt, run.worker)
            release(self.settings, self.runs, run, f"worker lost: {run.worker}")
        return len(lost)

    def store_of(self, key: TargetKey) -> TargetStore:
        """The store holding ``key``'s files: its task's, or (for a chain removed since) the default one."""
        info = self.catalog.known_task(key.chain_type, key.chain, key.task)
        return self.store_for(info.cls) if info is not None else self.store

    def status(self, key: TargetKey) -> JobStatus:
        return job_status(
            key,
            store=self.store_of(key),
            runs=self.runs,
            scheduler=self.scheduler,
            expires_in=self.settings.url_expiry,
            lease_timeout=self.settings.lease_timeout,
            reclaim=self.reclaim,
        )

    def health(self) -> list[Check]:
        """Each dependency, named, and whether it answers."""
        checks: list[tuple[str, Any]] = [("registry", self.runs.check), ("store", self.store.check)]
        if self.scheduler is not None:
            checks.append(("scheduler", self.scheduler.check))
        results = []
        for name, probe in checks:
            try:
                results.append(Check(name, True, str(probe())))
            except Exception as exc:  # a health probe reports every failure, whatever it is
                results.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
        return results
