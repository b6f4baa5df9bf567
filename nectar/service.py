"""The library's front door: one object that submits runs and answers statuses and health.

``Nectar(settings)`` ties the catalog, the store, the run registry and the scheduler together;
the HTTP API and the CLI are thin layers over it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import luigi

from nectar.config import Settings, get_settings
from nectar.discovery import ChainCatalog, TaskInfo
from nectar.keys import TargetKey
from nectar.runs import Run, RunState, RunStore, open_run_store
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


class Nectar:
    """Catalog, store, registry and scheduler for one set of settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.catalog = ChainCatalog(self.settings.chains_dir)

    @functools.cached_property
    def runs(self) -> RunStore:
        return open_run_store(self.settings.registry_path)

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
        run = Run.new(key.path, info.chain_type, info.chain, info.name, instance.to_str_params(), instance.task_id)
        run, created = self.runs.submit(run)
        return Submission(key, run, created)

    def store_of(self, key: TargetKey) -> TargetStore:
        """The store holding ``key``'s files: its task's, or (for a chain removed since) the default one."""
        info = self.catalog.known_task(key.chain_type, key.chain, key.task)
        return self.store_for(info.cls) if info is not None else self.store

    def status(self, key: TargetKey) -> JobStatus:
        return job_status(
            key, store=self.store_of(key), runs=self.runs, scheduler=self.scheduler, expires_in=self.settings.url_expiry
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
