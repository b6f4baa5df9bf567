"""The library's front door: one object that submits runs and answers statuses and health.

``Nectar(settings)`` ties the catalog, the store, the run registry and the scheduler together;
the HTTP API and the CLI are thin layers over it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import luigi

from nectar.catalog import ChainCatalog
from nectar.catalog.asked import run_complete
from nectar.catalog.model import ChainInfo, TaskInfo
from nectar.config import Settings, get_settings, retry_value
from nectar.errors import InvalidSetting, InvalidTask, NectarError, QueueFull, RunNotFound
from nectar.keys import TargetKey
from nectar.luigi_internals import stop_mock_filesystem
from nectar.luigid import SchedulerClient, scheduler_of
from nectar.once import made_once
from nectar.params import run_params
from nectar.registry import Attempt, RetryPolicy, Run, RunFilter, RunState, RunStore, Step, open_run_store
from nectar.registry.model import made_at_once
from nectar.retry_count import luigi_attempts, luigi_retry_count, own_attribute, scheduler_retry_count
from nectar.status import JobStatus, job_status
from nectar.stores import TargetStore, get_store
from nectar.task import NectarTask, chain_module

if TYPE_CHECKING:
    from nectar.schedules.book import ScheduleBook
    from nectar.triggers.book import TriggerBook


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


def retry_policy(task: Any, settings: Settings, ref: str | None = None) -> RetryPolicy:
    """A task's (class or instance) retry policy: its ``retries``, ``retry_delay`` and ``retry_backoff``, else
    the settings'. Without ``retries``, luigi's ``retry_count`` (the task's, else ``[scheduler] retry_count`` in
    luigi.cfg) is its number of attempts, as luigi runs it that many times before it disables it.

    The class's values are read by the rule of the setting each stands for (:func:`nectar.config.retry_value`):
    :class:`InvalidTask` names the class, the attribute and the rule of one it refuses (``inf``, ``nan``, a negative
    number, a backoff below 1, more retries than the registry's INTEGER holds) by ``ref`` (its class's name
    without it)."""

    count = luigi_retry_count(task)
    try:  # the registry's max_attempts (luigi's retry_count, where the task has one)
        attempts = None if count is None else luigi_attempts(count, f"{_owner(task, ref)} retry_count")
    except InvalidSetting as exc:
        raise InvalidTask(str(exc)) from None
    attempts = attempts or scheduler_retry_count(settings.luigi_config)
    # each attribute the class sets read in turn by its setting's rule, the default where it sets none: without a
    # closure made for each call, the class's name for an error made only for one, and the policy made at once
    # (a frozen dataclass's __init__ sets each field through object.__setattr__): 23.5k -> 16.1k instructions a
    # submission (callgrind)
    retries = own_attribute(task, "retries")
    retries = (
        (attempts - 1 if attempts else settings.retries) if retries is None else _checked(task, ref, "retries", retries)
    )
    delay = own_attribute(task, "retry_delay")
    delay = settings.retry_delay if delay is None else _checked(task, ref, "retry_delay", delay)
    backoff = own_attribute(task, "retry_backoff")
    backoff = settings.retry_backoff if backoff is None else _checked(task, ref, "retry_backoff", backoff)
    return made_at_once(RetryPolicy, {"retries": int(retries), "delay": delay, "backoff": backoff})


def _owner(task: Any, ref: str | None) -> str:
    """The task's class as an error names it: by ``ref``, else its class's name."""
    cls = task if isinstance(task, type) else type(task)
    return f"task class {ref or cls.__qualname__}'s"


def _checked(task: Any, ref: str | None, field: str, value: object) -> float:
    """``value`` of the task's policy attribute ``field``, read by its setting's rule; :class:`InvalidTask` naming the
    class, the attribute and the rule where it refuses it."""
    try:
        return retry_value(field, value, f"{_owner(task, ref)} {field}")
    except InvalidSetting as exc:
        raise InvalidTask(str(exc)) from None


class Nectar:
    """Catalog, store, registry and scheduler for one set of settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        # luigi.cfg's [scheduler] retry_count, a run's attempts where its task sets none: one luigi has no number of
        # attempts for (luigid refuses to start on it) is refused as the service starts, not at each submission
        scheduler_retry_count(self.settings.luigi_config)
        self.catalog = ChainCatalog(self.settings.chains_dir)

    @made_once
    def runs(self) -> RunStore:
        """The registry, opened by the first thread that asks (:meth:`close` closes it)."""
        return open_run_store(self.settings)

    @property
    def store(self) -> TargetStore:
        return get_store(self.settings)

    def close(self) -> None:
        """End this process's use of the registry, if it was opened (a later use opens it again)."""
        runs = self.__dict__.get("runs")  # the cached property's value, once made
        if runs is not None:
            runs.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @made_once
    def schedules(self) -> ScheduleBook:
        """Every schedule, from the chain files and the API (:mod:`nectar.schedules.book`)."""
        from nectar.schedules.book import ScheduleBook

        return ScheduleBook(self)

    @made_once
    def triggers(self) -> TriggerBook:
        """Every data trigger, from the chain files and the API (:mod:`nectar.triggers.book`)."""
        from nectar.triggers.book import TriggerBook

        return TriggerBook(self)

    @made_once
    def scheduler(self) -> SchedulerClient | None:
        return scheduler_of(self.settings)

    # --- what the HTTP layer reads: the catalog, the runs and luigid's pages, without reaching inside ---

    def chain_types(self) -> dict[str, list[ChainInfo]]:
        return self.catalog.types()

    def chains(self) -> list[ChainInfo]:
        return self.catalog.chains()

    def chain(self, chain_type: str, chain: str) -> ChainInfo:
        return self.catalog.chain(chain_type, chain)

    def task(self, chain_type: str, chain: str, task: str) -> TaskInfo:
        """The task's description, as its chain's file makes it now (:meth:`~nectar.catalog.ChainCatalog.task_now`);
        ChainNotFound or TaskNotFound naming what is missing."""
        return self.catalog.task_now(self.catalog.task(chain_type, chain, task))

    def task_to_fire(self, chain_type: str, chain: str, task: str) -> TaskInfo:
        """A task a fire makes a run of (a schedule's, a trigger's, a pre-load's): as the catalog saw it when the
        clock's pass began (its ``known_task``: no stat), else looked up with its error; either as its chain's file
        makes it now (:meth:`~nectar.catalog.ChainCatalog.task_now`, once)."""
        known = self.catalog.known_task(chain_type, chain, task)
        return self.task(chain_type, chain, task) if known is None else self.catalog.task_now(known)

    def no_chains_said(self) -> str:
        """Why a listing holds no chain: where the catalog looked, and what a chain file is named."""
        return self.catalog.none_found()

    def chains_passed_over(self) -> str | None:
        """Why a listing misses some chains (a chain type folder it cannot read), or None: nothing was missed."""
        return self.catalog.passed_over()

    @property
    def chains_folder(self) -> str:
        return self.catalog.root.name

    def find_runs(self, where: RunFilter, offset: int = 0, limit: int = 50) -> tuple[list[Run], int]:
        """The runs ``where`` matches, newest first, from ``offset``; and how many match in all."""
        return self.runs.find(where, offset=offset, limit=limit)

    def steps(self, run_id: str) -> list[Step]:
        return self.runs.steps(run_id)

    def attempts(self, run_id: str) -> list[Attempt]:
        return self.runs.attempts(run_id)

    def visualiser_url(self, task_id: str) -> str | None:
        """The task in luigi's visualiser; None without a luigid."""
        return self.scheduler.task_url(task_id, self.settings.scheduler_public_url) if self.scheduler else None

    def store_for(self, task_cls: Any) -> TargetStore:
        return get_store(self.settings, getattr(task_cls, "store_kind", None))

    def submit(self, chain_type: str, chain: str, task: str, values: Mapping[str, Any]) -> Submission:
        """Queue a run of a task, unless its output exists or an identical run is active."""
        info = self.task(chain_type, chain, task)
        return self.submit_task(info, info.instantiate(values))

    def submit_task(self, info: TaskInfo, instance: luigi.Task) -> Submission:
        """Queue a run of ``instance`` (a task of ``info``), unless done or already active."""
        key = info.key_of(instance)
        run = self.new_run(info, instance, key=key)
        if run is None:
            return Submission(key, None, False, self._done(key, instance))
        try:
            run, created = self.runs.submit(run, max_pending=self.settings.max_queue)
        except QueueFull as exc:
            raise QueueFull(str(exc), retry_after=self.settings.retry_after) from exc
        if created:  # the run's first event in the JSON logs (README, Logs); off in the API's default text logs (root
            # at WARNING: nectar.gunicorn_ext), where it costs a cached level check, ~0.25 µs (~14 µs written as JSON)
            logger.info("run %s of %s queued: %s", run.id, run.ref, key.path, extra={"run_id": run.id})
        return Submission(key, run, created)

    def new_run(
        self,
        info: TaskInfo,
        instance: luigi.Task,
        schedule_id: str | None = None,
        fire_time: float | None = None,
        trigger_id: str | None = None,
        objects: tuple[str, ...] | None = None,
        key: TargetKey | None = None,
    ) -> Run | None:
        """The run that makes ``instance`` (a task of ``info``), not yet queued; None if its output is done. ``key``
        is ``info.key_of(instance)`` when the caller has it already (a plain luigi task's is not kept: made again,
        it serialized and hashed its parameters again)."""
        if self._complete(instance, chain_module(info.chain_type, info.chain)):
            return None
        return Run.new(
            (key or info.key_of(instance)).path,
            info.chain_type,
            info.chain,
            info.name,
            run_params(instance),
            instance.task_id,
            retry_policy(instance, self.settings, info.ref),
            schedule_id=schedule_id,
            fire_time=fire_time,
            trigger_id=trigger_id,
            objects=objects,
        )

    def _complete(self, instance: luigi.Task, module: str) -> bool:
        """Whether the task is done, by its own ``complete()`` (a ``NectarTask``'s: its md5 ``out.txt`` exists), asked
        as a run of the chain module ``module`` asks it: in its working directory (:func:`run_complete`).

        A ``complete()`` that raises is not answered here: a run is queued, and records the failure with
        its traceback where every run's failure is told (the status), as luigi would when scheduling it; but
        a store that cannot be used (:class:`~nectar.errors.StoreUnavailable`) is the submission's error.
        """
        try:
            cls = type(instance)
            own = cls.complete is luigi.Task.complete and cls.output is NectarTask.output
            if own and isinstance(instance, NectarTask):  # luigi's complete() of one store target, not iterable
                # (flatten raised and caught to see it): whether it exists, asked of its store without making it
                return instance.store.target_exists(instance.target_key)
            return run_complete(instance, module)
        except NectarError:  # the store itself is unusable (a missing bucket): the submission says so
            raise
        except Exception:
            logger.info("complete() of %s raised: a run is queued to record why", instance.task_id, exc_info=True)
            return False
        finally:  # a MockTarget's data process, which this process would leave behind (it ends with os._exit)
            stop_mock_filesystem()

    def _done(self, key: TargetKey, instance: luigi.Task) -> JobStatus:
        """The DONE status of a complete task: with its download URL when it is a ``NectarTask``, with its
        parameters otherwise (its own outputs are listed from them, whether or not a run here made them): a run's
        (:func:`~nectar.params.run_params`), so that a value given as its default's text stays given and the outputs
        listed are those the status lists (its run's parameters)."""
        latest = self.runs.latest(key.path)
        if not isinstance(instance, NectarTask):
            return JobStatus(key, RunState.DONE.value, latest, [], params=run_params(instance))
        expiry, store = self.settings.url_expiry, self.store_for(type(instance))
        return JobStatus(key, RunState.DONE.value, latest, [], store.url(key, expiry), expiry)

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

    def store_of(self, key: TargetKey) -> TargetStore:
        """The store holding ``key``'s files: its task's, or (for a chain removed since) the default one."""
        return self.task_store(key)[1]

    def task_store(self, key: TargetKey) -> tuple[TaskInfo | None, TargetStore]:
        """The task of ``key`` as last seen (None: its chain or task is gone) and :meth:`store_of` ``key``, found
        once for a caller that needs both (a status lookup and its downloads)."""
        info = self.catalog.known_task(key.chain_type, key.chain, key.task)
        return info, self.store_for(info.cls) if info is not None else self.store

    def status(self, key: TargetKey, store: TargetStore | None = None) -> JobStatus:
        """The status of ``key``'s task, its files in ``store`` (:meth:`store_of` ``key`` when the caller has it)."""
        return job_status(
            key,
            store=store or self.store_of(key),
            runs=self.runs,
            scheduler=self.scheduler,
            expires_in=self.settings.url_expiry,
            lease_timeout=self.settings.lease_timeout,
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
