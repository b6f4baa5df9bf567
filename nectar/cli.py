"""The ``nectar`` command: list chains, run a task in the foreground, ask a status, start workers.

nectar chains
nectar run testchains/hello_luigiworld_chain/WithDependencyTask --aparam hi
nectar status chains/testchains/hello_luigiworld_chain/TestS3Task/<md5>/out.txt
nectar cancel <run id>
nectar token --name ci --scope write
nectar worker --workers 2
nectar serve
nectar api --port 5000
nectar scheduler --scheduler-port 8082
nectar submit testchains/hello_luigiworld_chain/WithDependencyTask --params-csv rows.csv --server http://host:5000
nectar download testchains/hello_luigiworld_chain/WithDependencyTask --dest outputs --resume
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nectar.config import Settings, configure, get_settings
from nectar.errors import InvalidParameters, NectarError, StoreUnavailable
from nectar.eventlog import configure_logging
from nectar.keys import STDERR_FILE, TargetKey

if TYPE_CHECKING:
    from nectar.client import DownloadReport, NectarClient, Progress, RowResult

COMMON_FLAGS = {
    "--chains-dir": "folder holding <type>/<name>_chain.py files (env NECTAR_CHAINS_DIR, default ./chains)",
    "--data-dir": "folder for the run registry and live logs (env NECTAR_DATA_DIR, default ./nectar_data)",
    "--scheduler-url": "luigi central scheduler, e.g. http://localhost:8082 (env NECTAR_SCHEDULER_URL)",
}


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(
        chains_dir=args.chains_dir, data_dir=args.data_dir, scheduler_url=getattr(args, "scheduler_url", None)
    )
    configure(settings)
    return settings


def _task_params(extra: Sequence[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs; names may use - for _."""
    params: dict[str, str] = {}
    items = list(extra)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or len(flag) < 3:
            raise SystemExit(f"nectar run: expected --<param> <value>, got {flag!r}")
        name, sep, value = flag[2:].partition("=")
        if not sep:
            if not items:
                raise SystemExit(f"nectar run: --{name} needs a value")
            value = items.pop(0)
        params[name.replace("-", "_")] = value
    return params


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cmd_chains(args: argparse.Namespace) -> int:
    from nectar.catalog import ChainCatalog

    settings = _settings(args)
    rows = [["CHAIN", "TASK", "PARAMETERS"]]
    for chain in ChainCatalog(settings.chains_dir).chains():
        if chain.error:
            rows.append([chain.ref, "(import failed)" if chain.import_failed else "(no task)", chain.error])
        for task in chain.tasks.values():
            params = ", ".join(f"{p.name}:{p.kind}" + ("*" if p.required else f"={p.default}") for p in task.params)
            aliases = f" (also {', '.join(task.aliases)})" if task.aliases else ""
            rows.append([chain.ref, task.name + aliases, params or "-"])
        rows += [[chain.ref, f"({hidden.name}: not exposed)", hidden.reason] for hidden in chain.hidden]
    print(_table(rows))
    print("\n* required" if len(rows) > 1 else f"no chains under {settings.chains_dir}")
    return 0


def _print_status(nectar: Any, key: TargetKey) -> str:
    """Print a key's status; a location only where a file is (the output once DONE, a failed step's log)."""
    status = nectar.status(key)
    print(f"job_status: {status.job_status}")
    print(f"key:        {key.path}")
    store = nectar.store_of(key)
    if status.done:
        print(f"location:   {store.describe(key)}")
    if status.run:
        print(f"run:        {status.run.id}")
    for step in status.steps:
        ran = "ran" if step.executed else "-"
        print(f"  {step.state:<8} {ran:<3} {step.task}" + (f": {step.error}" if step.error else ""))
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
    live = get_settings().live_logs_dir / log.path
    return str(live) if live.is_file() else None


def cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import luigi.configuration

    from nectar.attempt import process_name
    from nectar.executor import run_in_foreground
    from nectar.serve import luigi_config
    from nectar.service import Nectar

    settings = _settings(args)
    parts = args.task.split("/")
    if len(parts) != 3:
        raise SystemExit("nectar run: name the task as <type>/<chain>/<Task>")
    config = luigi_config(settings)
    if config is not None:  # luigi.cfg's [core] log_level, its [worker] settings: as in `nectar worker`
        luigi.configuration.add_config_path(str(config))
    nectar = Nectar(settings)
    chain_type, chain, task = parts
    submission = nectar.submit(chain_type, chain, task, _task_params(extra))
    if submission.done:
        print("already done, nothing to run")
    elif not submission.created:
        assert submission.run is not None
        print(f"an identical run is already {submission.run.state} (run {submission.run.id}); not starting another")
        return 3
    else:
        assert submission.run is not None
        run_in_foreground(settings, nectar.runs, submission.run.id, process_name())
    return 0 if _print_status(nectar, submission.key) == "DONE" else 1


def cmd_status(args: argparse.Namespace) -> int:
    from nectar.service import Nectar

    nectar = Nectar(_settings(args))
    return 0 if _print_status(nectar, TargetKey.parse(args.key)) == "DONE" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    from nectar.service import Nectar

    run = Nectar(_settings(args)).cancel(args.run_id)
    print(f"run {run.id} of {run.ref}: {run.state.value}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from nectar.auth import new_token

    token, digest = new_token()
    print(f"token (give it to the client; it is not stored anywhere): {token}")
    print(f"entry (add it to NECTAR_API_TOKENS or NECTAR_API_TOKENS_FILE): {digest}:{args.scope}:{args.name}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from nectar.executor import Executor

    settings = _settings(args)
    configure_logging(settings.log_format)
    Executor(settings, concurrency=args.workers).serve_forever()
    return 0


def _client(args: argparse.Namespace) -> NectarClient:
    from nectar.client import NectarClient, RetryPolicy

    return NectarClient(args.server, args.token, RetryPolicy(attempts=max(1, args.attempts)))


def _submit_table(ref: str, results: Sequence[RowResult]) -> str:
    from nectar.client import row_counts

    rows = [["ROW", "STATE", "ATTEMPTS", "SECONDS", "KEY / ERRORS"]]
    for result in results:
        digest = TargetKey.parse(result.key).digest if result.key else ""
        detail = " ".join((result.detail or "").split())  # one line, whatever the error said
        seconds = f"{result.seconds:.1f}"
        rows.append([str(result.row), result.state, str(result.attempts), seconds, f"{digest}  {detail}".strip()])
    _, counts = row_counts(results)
    totals = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()))
    return f"{_table(rows)}\n\nKEY: chains/{ref}/<KEY>/out.txt\n{len(results)} rows: {totals or 'none'}"


def cmd_submit(args: argparse.Namespace) -> int:
    from nectar.client import Progress, read_rows, row_counts, split_ref

    try:
        split_ref(args.task)
        rows = read_rows(Path(args.params_csv))
    except (ValueError, OSError) as exc:
        print(f"nectar submit: {exc}", file=sys.stderr)
        return 2
    client = _client(args)
    client.task(args.task)  # an unknown task or a refused token stops here, before any row
    wait_done = not args.no_wait
    progress = Progress(len(rows), "row")
    results = client.submit_rows(
        args.task,
        rows,
        concurrency=args.concurrency,
        wait_done=wait_done,
        on_change=lambda now: progress.update(*row_counts(now, wait_done)),
    )
    progress.close()
    print(_submit_table(args.task, results))
    if wait_done:
        return 0 if all(result.state == "DONE" for result in results) else 1
    accepted = all(result.state == "DONE" or (result.key and not result.final) for result in results)
    return 0 if accepted else 1


def cmd_download(args: argparse.Namespace) -> int:
    progress: Progress | None = None

    def show(report: DownloadReport) -> None:
        nonlocal progress
        from nectar.client import Progress

        progress = progress or Progress(report.total, "file")
        progress.update(sum(report.counts.values()), report.counts)

    dest = Path(args.dest)
    report = _client(args).download(args.task, dest, resume=args.resume, concurrency=args.concurrency, on_change=show)
    if progress is not None:
        progress.close()
    for key, reason in sorted(report.failed.items()):
        print(f"failed {key}: {reason}")
    counts = ", ".join(f"{name} {count}" for name, count in report.counts.items())
    print(f"{counts} of {report.total} DONE outputs of {args.task} in {dest}")
    return 1 if report.failed else 0


def _client_command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
    sub.add_argument("task", help="<type>/<chain>/<Task>")
    server = os.environ.get("NECTAR_SERVER") or "http://127.0.0.1:5000"
    sub.add_argument("--server", default=server, help=f"the API's URL (env NECTAR_SERVER, now {server})")
    sub.add_argument("--token", default=os.environ.get("NECTAR_TOKEN"), help="API token (env NECTAR_TOKEN)")
    sub.add_argument("--concurrency", type=int, default=8, help="requests at once (default 8)")
    sub.add_argument(
        "--attempts", type=int, default=6, help="tries per request on 503 and connection errors (default 6)"
    )
    return sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nectar", description="Luigi chains behind an HTTP API.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        for flag, text in COMMON_FLAGS.items():
            sub.add_argument(flag, help=text)
        return sub

    command("chains", "list the chains, their tasks and parameters")
    run = command("run", "run a task in the foreground: nectar run <type>/<chain>/<Task> --param value ...")
    run.add_argument("task", help="<type>/<chain>/<Task>")
    status = command("status", "the status of a target key")
    status.add_argument("key", help="chains/<type>/<chain>/<Task>/<md5>/out.txt")
    token = commands.add_parser("token", help="make a new API token and the hash to configure for it")
    token.add_argument("--name", default="client", help="who holds it (shown in 403 answers and logs)")
    token.add_argument("--scope", choices=("read", "write"), default="write", help="write can also read")
    cancel = command("cancel", "cancel a queued or running run")
    cancel.add_argument("run_id", help="the run's id (run_id in its status)")
    worker = command("worker", "claim and execute queued runs until stopped")
    worker.add_argument("--workers", type=int, default=1, help="runs executed at once (default 1)")
    serve = commands.add_parser(
        "serve", help="start luigid, the workers and the API", description="start luigid, the workers and the API"
    )
    from nectar.serve import ROLE_FLAGS, add_arguments

    add_arguments(serve)
    api = commands.add_parser("api", help="serve the HTTP API alone (gunicorn), e.g. behind a load balancer")
    add_arguments(api, ROLE_FLAGS["api"])
    scheduler = commands.add_parser("scheduler", help="run luigid alone, with this project's luigi.cfg and pools")
    add_arguments(scheduler, ROLE_FLAGS["scheduler"])
    submit = _client_command(commands, "submit", "submit a run per CSV row to a server and wait until each ends")
    submit.add_argument("--params-csv", required=True, help="header: parameter names; an empty cell: the default")
    submit.add_argument("--no-wait", action="store_true", help="stop once every row is submitted")
    download = _client_command(commands, "download", "download the output of every DONE run of a task")
    download.add_argument("--dest", required=True, help="folder to write <md5>/out.txt into")
    download.add_argument("--resume", action="store_true", help="skip the files already downloaded whole")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "run":
            return cmd_run(args, extra)
        if args.command in ("serve", "api", "scheduler"):
            from nectar import serve

            role: Any = {"serve": serve.serve, "api": serve.api, "scheduler": serve.scheduler}[args.command]
            return int(role(args))
        handler = {
            "chains": cmd_chains,
            "status": cmd_status,
            "cancel": cmd_cancel,
            "token": cmd_token,
            "worker": cmd_worker,
            "submit": cmd_submit,
            "download": cmd_download,
        }[args.command]
        return handler(args)
    except InvalidParameters as exc:
        for name, messages in sorted(exc.errors.items()):
            print(f"nectar: --{name}: {'; '.join(messages)}", file=sys.stderr)
        return 2
    except NectarError as exc:
        print(f"nectar: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
