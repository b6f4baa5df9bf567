"""The commands that work on this machine's chains and registry: chains, run, status, cancel, token, worker."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from nectar import exits
from nectar.config import WORKERS_MOST, Settings, configure, load_luigi_config, whole_number
from nectar.errors import InvalidSetting, StoreUnavailable
from nectar.logs.format import configure_logging

if TYPE_CHECKING:  # nectar.keys loads hashlib (and OpenSSL's libcrypto): not in nectar serve's supervisor
    from nectar.deferred_imports import Deferral
    from nectar.keys import TargetKey
    from nectar.registry.store import RunStore

logger = logging.getLogger(__name__)


def settings_of(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(
        chains_dir=args.chains_dir, data_dir=args.data_dir, scheduler_url=getattr(args, "scheduler_url", None)
    )
    configure(settings)
    return settings


def registry_settings_of(args: argparse.Namespace) -> Settings:
    """:func:`settings_of` for a command that reads or changes the service's registry (``status``, ``cancel``,
    ``schedules``, ``triggers``; not ``backfill``, which names its argument errors first and writes): refused where
    its SQLite registry is not (another folder than the service's, a mistyped ``NECTAR_DATA_DIR``) or its PostgreSQL
    database holds none (another database than the service's), naming where it looked, rather than making an empty
    one there and answering from it "no run" (review23, review24: a read never writes)."""
    settings = settings_of(args)
    if settings.database_url:
        from nectar.registry.postgres import holds_registry

        missing = holds_registry(settings.database_url)
        if missing is not None:  # a mistyped database, the server's default, another application's: no tables made
            raise InvalidSetting(f"{missing}: give the service's NECTAR_DATABASE_URL")
    elif not settings.registry_path.exists():
        raise InvalidSetting(
            f"no run registry at {settings.registry_path}: run this command in the folder the service runs in, or"
            f" give its data folder (--data-dir or NECTAR_DATA_DIR; {settings.data_dir} has none)"
        )
    return settings


def _task_params(extra: Sequence[str], flags: Mapping[str, bool] | None = None) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs; names may use - for _. ``flags`` names the task's
    ``BoolParameter``s, read as luigi's command line reads them: each is true given as ``--name`` alone, and one
    whose value may follow (True: luigi's explicit parsing) takes the next word unless it is another ``--name``."""
    flags = flags or {}
    params: dict[str, str] = {}
    items = list(extra)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or len(flag) < 3:
            raise InvalidSetting(f"run: expected --<param> <value>, got {flag!r}")  # a usage error: status 2
        name, sep, value = flag[2:].partition("=")
        name = name.replace("-", "_")
        if not sep:
            if name in flags and (not flags[name] or not items or items[0].startswith("--")):
                value = "true"
            elif not items:
                raise InvalidSetting(f"run: --{name} needs a value")
            else:
                value = items.pop(0)
        params[name] = value
    return params


#: the member of :func:`_luigi_flags`' answer that holds luigi's ``--workers`` (no parameter's name: not an identifier)
_WORKERS = "--workers"


def _global_flags(task_cls: type, names: Sequence[str]) -> dict[str, str]:
    """luigi's global form of each parameter of ``task_cls``, ``--<Task>-<param>`` (its family, or one of the
    ``names`` the service knows it by), as :func:`_task_params` reads it (``-`` as ``_``), to the parameter's name."""
    import luigi

    assert issubclass(task_cls, luigi.Task)
    prefixes = {task_cls.get_task_family(), *names}
    return {f"{prefix}_{name}".replace("-", "_"): name for prefix in prefixes for name, _ in task_cls.get_params()}


def _luigi_flags(given: dict[str, str], spelled: Mapping[str, str], task_cls: type) -> dict[str, str]:
    """The task's parameters of ``given`` (:func:`_task_params`) as luigi's command line reads them: one given in
    luigi's global form (``--<Task>-<param>``, ``spelled``: :func:`_global_flags`) under its name, luigi's own
    ``--workers`` (where the task has no parameter of that name) under :data:`_WORKERS`. Exits naming the flag for a
    parameter given both ways with two values, and for the global form of another task's parameter: luigi sets it
    for every instance of that task the run makes, where a run here is known by its own task's parameters alone (its
    retries and another worker taking it would not have it)."""
    import luigi

    own = {name for name, _ in task_cls.get_params()} if issubclass(task_cls, luigi.Task) else set()
    params: dict[str, str] = {}
    for name, value in given.items():
        if name in own:
            pass
        elif name in spelled:
            param = spelled[name]
            if given.get(param, value) != value:
                flag = name.replace("_", "-")
                raise InvalidSetting(f"run: --{flag} and --{param} give {param} two values: give one")
            name = param
        elif name == "workers":
            name = _WORKERS
        else:
            _refuse_other_task(name)
        params[name] = value
    return params


def _refuse_other_task(name: str) -> None:
    """Exit naming ``--<name>`` where it is luigi's global form of a parameter of a task other than the one run, or an
    option of luigi's own command line (``--log-level``: its ``core`` section's, but ``--workers``, and
    ``--local-scheduler`` and ``--no-lock``, which ``run``'s parser takes)."""
    from luigi.task_register import Register

    for family, own, param, _ in Register.get_all_params():
        if (param if own else f"{family}_{param}").replace("-", "_") != name:
            continue
        flag = name.replace("_", "-")
        if own:
            raise InvalidSetting(
                f"run: --{flag} is an option of luigi's own command line ([{family}] {param}), which nectar "
                f"run does not take: set it in luigi.cfg (NECTAR_LUIGI_CONFIG), [{family}] {param} = ..., which every "
                "run reads"
            )
        raise InvalidSetting(
            f"run: --{flag} sets {param} of {family} (luigi's global form: for every {family} of the "
            "command); nectar run takes its own task's parameters alone (a run is known by them: a retry, and "
            f"another worker that takes it, would run without it): set it in luigi.cfg, [{family}] {param} = ..."
        )


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cmd_chains(args: argparse.Namespace) -> int:
    with service_deferral():
        from nectar.catalog import ChainCatalog

    catalog = ChainCatalog(settings_of(args).chains_dir)
    rows = [["CHAIN", "TASK", "PARAMETERS"]]
    for chain in catalog.chains():
        if chain.error:
            rows.append([chain.ref, "(import failed)" if chain.import_failed else "(no task)", chain.error])
        for task in chain.tasks.values():
            params = ", ".join(
                f"{p.name}:{p.kind}" + ("*" if p.required else " (private)" if p.private else f"={p.default}")
                for p in task.params
            )
            aliases = f" (also {', '.join(task.aliases)})" if task.aliases else ""
            rows.append([chain.ref, task.name + aliases, params or "-"])
        rows += [[chain.ref, f"({hidden.name}: not exposed)", hidden.reason] for hidden in chain.hidden]
    print(table(rows))
    print("\n* required" if len(rows) > 1 else catalog.none_found())
    return 0


def _print_status(nectar: Any, key: TargetKey) -> str:
    """Print a key's status; a location only where a file is (each output of its task once DONE, as its status in
    the API names them: a plain luigi task's own targets, a NectarTask's ``out.txt``; a failed step's log)."""
    from nectar.keys import STDERR_FILE, TargetKey
    from nectar.outputs import said_status

    status, outputs, _ = said_status(nectar, key)  # as the API says it (DONE, its output deleted since: MISSING)
    print(f"job_status: {status.job_status}")
    print(f"key:        {key.path}")
    if status.done:
        for output in outputs:
            if output.target:
                print(f"location:   {output.target}")
    if status.run:
        print(f"run:        {status.run.id}")
    for step in status.steps:
        ran = "ran" if step.executed else "-"
        print(f"  {step.state:<8} {ran:<3} {step.task}" + (f": {step.error}" if step.error else ""))
    if status.error and not status.failed_step:  # why, where no step failed (MISSING: its output gone; a lost worker)
        print(f"error:      {status.error}")
    if status.failed_step:
        print(f"failed:     {status.failed_step}: {status.error}")
        failed = TargetKey.parse(
            next((s.key for s in status.steps if s.task == status.failed_step and s.key), key.path)
        )
        log = _log_location(nectar.store_of(failed), failed.with_file(STDERR_FILE))
        if log:
            print(f"logs:       {log}")
    return str(status.job_status)


def _log_location(store: Any, log: TargetKey) -> str | None:
    """Where a log is: in the store, else still in the live logs folder (its upload failed), else nowhere."""
    try:
        if store.exists(log):
            return str(store.describe(log))
    except StoreUnavailable:  # the step failed on its store (a missing bucket): no log can be there
        pass
    from nectar.task import live_log_paths

    live = live_log_paths(log)[1]  # a stderr's key: its step's live stderr
    return str(live) if live.is_file() else None


def _chain_of_module(settings: Settings, module: str) -> tuple[str, str]:
    """The chain (type, chain) luigi's ``--module <module>`` names: ``chains.<type>.<chain>``, ``<type>.<chain>`` (the
    chains folder on ``PYTHONPATH``) or ``<chain>`` (its type's folder there), of a chain file of the chains folder;
    exits naming the module where no chain file, or more than one, is that module."""
    names = module.split(".")
    if len(names) == 3 and names[0] == "chains":
        names = names[1:]
    root = settings.chains_dir
    if len(names) == 2:
        found = [(names[0], names[1])] if (root / names[0] / f"{names[1]}.py").is_file() else []
    elif len(names) == 1 and names[0]:
        found = sorted(
            (folder.name, names[0])
            for folder in (root.iterdir() if root.is_dir() else ())
            if not folder.name.startswith(("_", ".")) and (folder / f"{names[0]}.py").is_file()
        )
    else:
        found = []
    if len(found) == 1:
        return found[0]
    where = f"the chains folder {root}"
    if found:
        types = ", ".join(f"{chain_type}/{chain}" for chain_type, chain in found)
        raise InvalidSetting(
            f"run: --module {module} is a chain file of several types in {where} ({types}): name "
            "the task as <type>/<chain>/<Task>"
        )
    raise InvalidSetting(
        f"run: --module {module} is no chain file of {where} (nectar runs the chains of its chains folder, "
        "<type>/<chain>.py, not a module of sys.path): name the task as <type>/<chain>/<Task>, or --module <chain>"
    )


def cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import luigi

    from nectar.attempt import process_name
    from nectar.service import Nectar
    from nectar.supervisor import luigi_config

    settings = settings_of(args)
    parts = args.task.split("/")
    if args.module is not None and len(parts) == 3:  # the task's own parameter, as before luigi's form was taken
        extra = ["--module", args.module, *extra]
    elif args.module is not None:
        parts = [*_chain_of_module(settings, args.module), args.task]
    if len(parts) != 3:
        raise InvalidSetting("run: name the task as <type>/<chain>/<Task> (or luigi's --module <chain> <Task>)")
    load_luigi_config(luigi_config(settings))  # luigi.cfg's [core] log_level, its [worker] settings: as the worker
    with Nectar(settings) as nectar:
        chain_type, chain, task = parts
        info = nectar.catalog.task(chain_type, chain, task)
        flags: dict[str, bool] = {}  # each BoolParameter's name: whether a value may follow it
        for param in info.params:
            if isinstance(param.param, luigi.BoolParameter):
                flags[param.name] = param.param.parsing == luigi.BoolParameter.EXPLICIT_PARSING
        spelled = _global_flags(info.cls, (info.name, *info.aliases))
        flags.update({flag: flags[name] for flag, name in spelled.items() if name in flags})
        params = _luigi_flags(_task_params(extra, flags), spelled, info.cls)
        workers = params.pop(_WORKERS, None)
        if workers is not None:  # luigi's --workers N: the steps run at once, as NECTAR_TASK_WORKERS sets them
            settings = settings.replace(task_workers=whole_number("--workers", workers, 1, WORKERS_MOST))
            configure(settings)
        submission = nectar.submit(chain_type, chain, task, params)
        if submission.done:
            print("already done, nothing to run")
        elif not submission.created:
            assert submission.run is not None
            print(f"an identical run is already {submission.run.state} (run {submission.run.id}); not starting another")
            return 3
        else:
            assert submission.run is not None
            run_to_its_end(settings, nectar.runs, submission.run.id, process_name())
        return 0 if _print_status(nectar, submission.key) == "DONE" else 1


def run_to_its_end(settings: Settings, runs: RunStore, run_id: str, worker: str, note: TextIO | None = None) -> None:
    """Execute the run here and return once it has ended (or waits for its data): while a worker of a ``nectar
    serve`` (or ``nectar worker``) on the same registry has it, claimed before this process could, wait for that
    worker to end it, saying so once on ``note`` (stderr), and take a retry that worker leaves in the queue; a Ctrl-C
    while it waits stops the waiting, not the run.

    It waits in the registry's wait for work (:meth:`~nectar.registry.store.RunStore.wait_for_work`), which a commit
    that queues a run ends: a retry the other worker leaves in the queue (a failure, a requeue, a reclaim of its lease)
    wakes it at once. A run's end (DONE, FAILED, CANCELLED) queues nothing and the registry has no word for it (one
    would add a write to every attempt's end, for this one wait), so the wait also ends every
    ``max(NECTAR_WORKER_POLL, 0.2)`` seconds to read the run again: one read by primary key.

    While another worker has it, this process claims nothing (a claim tried every wake took the registry's write
    turn, and a Ctrl-C then landed in it: a traceback, exit -2), and a Ctrl-C (SIGINT) ends the waiting wherever it
    is between two reads, also where the kernel hands it to another thread of the process, which interrupts no wait
    (:func:`nectar.main_signals.watch` passes it on to the main thread). Outside the waiting (the run claimed here,
    executed), a Ctrl-C is a foreground run's."""
    from nectar import main_signals
    from nectar.executor import run_in_foreground
    from nectar.registry.model import RunState

    said = False
    while True:
        run_in_foreground(settings, runs, run_id, worker)
        run = runs.get(run_id)
        if run is None or run.state is not RunState.RUNNING:
            return
        main_signals.watch()
        other = run  # the other worker's, as last read
        try:
            if not said:
                print(
                    f"run {run_id} was claimed by worker {run.worker} (another process on this registry, such as a"
                    " nectar serve); waiting for it to end",
                    file=note or sys.stderr,
                    flush=True,
                )
                said = True
            while run is not None and run.state is RunState.RUNNING:
                other = run
                runs.wait_for_work(max(settings.worker_poll_interval, 0.2))
                run = runs.get(run_id)
        except KeyboardInterrupt:  # Ctrl-C: stop waiting, not the run, which is the other worker's
            said_stop = f"stopped waiting: run {run_id} goes on in worker {other.worker}"
            print(said_stop, file=note or sys.stderr, flush=True)
            return


def cmd_status(args: argparse.Namespace) -> int:
    from nectar.keys import TargetKey

    with service_deferral():
        from nectar.service import Nectar

    key = TargetKey.parse(args.key)  # a malformed key named before where the registry is
    with Nectar(registry_settings_of(args)) as nectar:
        return 0 if _print_status(nectar, key) == "DONE" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a run in the registry alone: no chain is read and luigi is not imported (~0.4 s of CPU a command). The
    luigi.cfg's ``[scheduler] retry_count`` is still checked first, as the service checks it as it starts."""
    from nectar.registry import open_run_store
    from nectar.retry_count import scheduler_retry_count

    settings = registry_settings_of(args)
    scheduler_retry_count(settings.luigi_config)
    runs = open_run_store(settings)
    try:
        _, run = runs.cancel(args.run_id)
    finally:
        runs.close()
    print(f"run {run.id} of {run.ref}: {run.state.value}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from nectar.auth import new_token

    token, digest = new_token()
    print(f"token (give it to the client; it is not stored anywhere): {token}")
    print(f"entry (add it to NECTAR_API_TOKENS or NECTAR_API_TOKENS_FILE): {digest}:{args.scope}:{args.name}")
    return 0


def service_deferral() -> Deferral:
    """The deferral under which a worker, a clock or a command of the registry and chains (not ``run``, which runs luigi
    here) imports luigi's and nectar's modules: without what luigi imports and they use only for some chains (requests,
    jsonschema) or never (tornado, for tenacity): ~11 MB of the worker's RSS, and of each attempt process it forks, and
    ~0.26 s of CPU at each start; ended before the chains load."""
    from nectar.deferred_imports import WORKER_ABSENT, WORKER_UNUSED, Deferral

    return Deferral(WORKER_UNUSED, WORKER_ABSENT)


def cmd_worker(args: argparse.Namespace) -> int:
    from nectar import lifeline

    lifeline.stops_exit_until_handled()  # until serve_forever's (the chains are executed before it)
    with service_deferral():
        from nectar.executor import Executor
        from nectar.schedules.clock import Clock
        from nectar.service import Nectar

    settings = settings_of(args)
    configure_logging(settings.log_format)
    if not getattr(args, "clock", False):
        execute_chains(settings)  # as the clock's catalog does (below), before the first fork
        Executor(settings, concurrency=args.workers).serve_forever()
        exits.exit_now(0)  # its registry closed, its children reaped: the teardown's CPU skipped (~0.38 s, 1 slot)
    with Nectar(settings) as nectar:  # its registry closed whatever the clock's stop raises
        clock = Clock(nectar, settings)
        # at the first stop request, as a clock of its own would be stopped with the workers
        executor = Executor(settings, concurrency=args.workers, runs=nectar.runs, on_stop=clock.request_stop)
        # the workers' stop before the clock's threads run (serve_forever sets it again): a stop between them ended
        # the process at once (stops_exit_until_handled's exit), the clock's passes cut where they were
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, executor.stop)
        clock.start()
        try:
            executor.serve_forever()
        finally:
            clock.stop()
    exits.exit_now(0)


def execute_chains(settings: Settings) -> None:
    """Every chain file under the chains folder executed here, as ``nectar worker --clock``'s catalog executes them
    (:class:`~nectar.schedules.clock.Clock`): in a worker before it forks its first attempt process, so what the
    chains import (pandas, boto3, requests) is imported once and its pages shared by every attempt, not imported by
    each attempt in its run's path. Each first in a probe child, within the spares' budget
    (:meth:`~nectar.catalog.ChainCatalog.refresh_ahead`): one whose import hangs, is slow or exits is left to its
    runs, the worker serving. Each attempt still executes its run's chain file as it is on disk then (a change takes
    effect at the next run); what a chain module sets in its process (luigi's handlers and options, environment
    variables, ``sys.path``) reaches only its own runs and its importers' (:func:`~nectar.catalog.luigi_state.held_to`).
    A folder that cannot be listed leaves the chains to their runs, said at WARNING."""
    from nectar.catalog import ChainCatalog
    from nectar.catalog.loader import AHEAD_BUDGET

    try:
        ChainCatalog(settings.chains_dir).refresh_ahead(AHEAD_BUDGET)
    except (Exception, SystemExit) as exc:  # the folder, or a chain's code: its runs say why, as before
        logger.warning("the chain files were not all executed ahead of their runs (each run executes its own): %r", exc)
