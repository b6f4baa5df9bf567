"""The ``nectar`` command: list chains, run a task in the foreground, ask a status, start workers.

nectar chains
nectar run testchains/hello_luigiworld_chain/WithDependencyTask --aparam hi
nectar status chains/testchains/hello_luigiworld_chain/TestS3Task/<md5>/out.txt
nectar cancel <run id>
nectar token --name ci --scope write
nectar worker --workers 2
nectar schedules
nectar backfill daily.sales_chain.DailyTask.0 --start 2026-03-01 --end 2026-03-31
nectar triggers
nectar clock
nectar serve
nectar api --port 5000
nectar scheduler --scheduler-port 8082
nectar submit testchains/hello_luigiworld_chain/WithDependencyTask --params-csv rows.csv --server http://host:5000
nectar submit testchains/hello_luigiworld_chain/WithDependencyTask --from-prefix s3://bucket/in/ --param aparam
nectar download testchains/hello_luigiworld_chain/WithDependencyTask --dest outputs --resume
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from typing import Any

from nectar.errors import InvalidParameters, NectarError

#: the commands that start a role's processes (:mod:`nectar.supervisor`): parsed without loading the other commands'
#: modules, which they never use, so that their first part starts sooner (``nectar serve``'s API is its cold start)
ROLE_COMMANDS = ("serve", "api", "scheduler")
#: the commands of this machine's registry and chains (:func:`add_commands`): parsed without the role and client
#: commands' flags (:func:`build_parser`)
LOCAL_COMMANDS = (
    "chains", "run", "status", "token", "cancel", "worker", "schedules", "backfill", "triggers", "clock"
)  # fmt: skip
#: the role commands' help
ROLE_HELP = {
    "serve": "start luigid, the workers and the API",
    "api": "serve the HTTP API alone (gunicorn), e.g. behind a load balancer",
    "scheduler": "run luigid alone, with this project's luigi.cfg and pools",
}
#: the client commands' help
CLIENT_HELP = {
    "submit": "submit a run per CSV row (or object under a prefix) and wait for each",
    "download": "download the output of every DONE run of a task",
}
COMMON_FLAGS = {
    "--chains-dir": "folder holding <type>/<name>_chain.py files (env NECTAR_CHAINS_DIR, default ./chains)",
    "--data-dir": "folder for the run registry and live logs (env NECTAR_DATA_DIR, default ./nectar_data)",
    "--scheduler-url": "luigi central scheduler, e.g. http://localhost:8082 (env NECTAR_SCHEDULER_URL)",
}


def terminal_columns() -> int:
    """The terminal's width in columns as :func:`shutil.get_terminal_size` answers it: ``COLUMNS`` if a positive
    number, else that of the terminal standard output is, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, given the terminal's width (:func:`terminal_columns`): argparse's own reads it with shutil, which
    imports bz2, lzma and zlib (0.5 MB), and makes a formatter as each argument is added (to check its metavar), so
    every ``nectar`` process imported them, ``nectar serve``'s supervisor too, which prints no help."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """An argument parser whose help is laid out by :class:`HelpFormatter`, as are its subcommands' (argparse makes
    them of its parser's class)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)


def build_parser(roles_only: bool = False, asked: str | None = None) -> argparse.ArgumentParser:
    """The ``nectar`` command's parser; with ``roles_only``, of :data:`ROLE_COMMANDS` alone (their flags the same).

    ``asked``, a command of this machine's registry and chains (``worker``, ``cancel``, ...): the role and client
    commands are named (with their help) but their flags not added, which imports :mod:`nectar.supervisor` and
    :mod:`nectar.cli.remote` (~45 ms of CPU a start of a worker, a clock, ``nectar cancel``); they are never parsed
    in that process. Any other ``asked`` (None, ``--help``, a misspelt command): every command whole."""
    parser = Parser(prog="nectar", description="Luigi chains behind an HTTP API.")
    commands = parser.add_subparsers(dest="command", required=True)
    named_only = asked in LOCAL_COMMANDS
    if not roles_only:
        add_commands(commands)
    add_role_commands(commands, flags=not named_only)
    if not roles_only:
        add_client_commands(commands, flags=not named_only)
    return parser


def add_commands(commands: Any) -> None:
    """The commands that work on this machine's registry and chains (``commands``: the subparsers)."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        # no abbreviations: a task's own --n (or --data, --local) is its parameter, not argparse's prefix of
        # --no-lock (--data-dir, --local-scheduler)
        sub = commands.add_parser(name, help=help, description=help, allow_abbrev=False)
        for flag, text in COMMON_FLAGS.items():
            sub.add_argument(flag, help=text)
        return sub

    command("chains", "list the chains, their tasks and parameters")
    run = command("run", "run a task in the foreground: nectar run <type>/<chain>/<Task> --param value ...")
    run.add_argument("task", help="<type>/<chain>/<Task>")
    run.add_argument(  # a command copied from python -m luigi keeps it
        "--local-scheduler",
        action="store_true",
        help="luigi's flag, taken as it is: the default without --scheduler-url",
    )
    run.add_argument(  # as --local-scheduler: in `--local-scheduler --no-lock`, luigi's command copied
        "--no-lock",
        action="store_true",
        help="luigi's flag, taken as it is: nectar run takes no lock of luigi's (a run identical to one queued or "
        "running is not started again, whatever the flag)",
    )
    run.add_argument(  # luigi's python -m luigi --module <chain> <Task>: the chain file of that name
        "--module",
        help="luigi's form: --module <chain> <Task> runs the task of the chains folder's <type>/<chain>.py (the one "
        "file of that name; or --module chains.<type>.<chain>); with <type>/<chain>/<Task>, the task's own --module",
    )
    status = command("status", "the status of a target key")
    status.add_argument("key", help="chains/<type>/<chain>/<Task>/<md5>/out.txt")
    token = commands.add_parser("token", help="make a new API token and the hash to configure for it")
    token.add_argument("--name", default="client", help="who holds it (shown in 403 answers and logs)")
    token.add_argument("--scope", choices=("read", "write"), default="write", help="write can also read")
    cancel = command("cancel", "cancel a queued or running run")
    cancel.add_argument("run_id", help="the run's id (run_id in its status)")
    worker = command("worker", "claim and execute queued runs until stopped")
    # a blank variable is its default, as for serve's flags (nectar.supervisor.add_arguments)
    workers = os.environ.get("NECTAR_WORKERS", "").strip() or "1"
    worker.add_argument("--workers", default=workers, help="runs executed at once (env NECTAR_WORKERS, default 1)")
    worker.add_argument(
        "--clock", action="store_true", help="also fire the schedules and poll the triggers here, as nectar clock does"
    )
    command("schedules", "list the schedules (from chain files and the API): when, paused, next and last fire")
    backfill = command("backfill", "fire a schedule for every fire time of a past range, max_active at a time")
    backfill.add_argument("schedule_id", help="the schedule's id (nectar schedules lists them)")
    backfill.add_argument("--start", required=True, help="ISO 8601 date or date-time (no offset: the schedule's zone)")
    backfill.add_argument("--end", required=True, help="the same, included; not in the future")
    command("triggers", "list the data triggers (from chain files and the API): prefix, paused, objects seen, runs")
    command("clock", "fire the schedules and poll the triggers (run as many as you like: each fire, each object once)")


def add_role_commands(commands: Any, flags: bool = True) -> None:
    """``serve``, ``api`` and ``scheduler`` (without ``flags``: named, their flags not added)."""
    serve, api, scheduler = (commands.add_parser(name, help=text, description=text) for name, text in ROLE_HELP.items())
    if not flags:
        return
    from nectar.supervisor import ROLE_FLAGS, SERVE_DEFAULTS, add_arguments

    add_arguments(serve, defaults=SERVE_DEFAULTS)
    add_arguments(api, ROLE_FLAGS["api"])
    add_arguments(scheduler, ROLE_FLAGS["scheduler"])


def add_client_commands(commands: Any, flags: bool = True) -> None:
    """The commands that talk to a running service over HTTP (without ``flags``: named, their flags not added)."""
    if not flags:
        for name, text in CLIENT_HELP.items():
            commands.add_parser(name, help=text, description=text)
        return
    from nectar.cli.remote import add_submit_sources, client_command

    submit = client_command(commands, "submit", CLIENT_HELP["submit"])
    add_submit_sources(submit)
    submit.add_argument("--no-wait", action="store_true", help="stop once every row is submitted")
    download = client_command(commands, "download", CLIENT_HELP["download"])
    download.add_argument("--dest", required=True, help="folder to write <md5>/<each output's name> into")
    download.add_argument("--resume", action="store_true", help="skip the files already downloaded whole")


def main(argv: Sequence[str] | None = None) -> int:
    """The command's exit status; a reader that stops early (``nectar status <key> | head -1``) ends it quietly with
    1, as a shell tool ends, instead of with a BrokenPipeError traceback. A broken pipe that is not stdout's (a
    socket or a child's pipe the command wrote to) is an error like any other: raised, not hidden."""
    try:
        status = dispatch(argv)
        if sys.stdout is not None:  # None: started with its descriptor 1 closed (``>&-``), where print writes nothing
            sys.stdout.flush()  # what is still buffered meets the closed pipe here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        if not _stdout_unread():
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left for the exit's flush to fail on
        os.close(devnull)
        return 1


def _stdout_unread() -> bool:
    """Whether no one reads stdout any more: the kernel marks a pipe's write end whose reader closed it (a socket
    whose peer did) with an error or a hang-up."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by an object without one, or closed
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def dispatch(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its command; an error it names is one line on stderr and status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(roles_only=bool(argv) and argv[0] in ROLE_COMMANDS, asked=argv[0] if argv else None)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        from nectar.config import check_chains_dir, check_luigi_parser

        check_luigi_parser(args)  # before luigi is imported: it reads its configuration as it is
        check_chains_dir(args)  # before anything starts: the chains folder of every command that reads one
        if args.command in ROLE_COMMANDS:
            from nectar import lifeline, supervisor

            lifeline.stops_exit_until_handled()  # nothing started yet: a stop ends it (0) until serve's handlers
            from nectar.config import check_role_settings

            check_role_settings(args)

            roles: dict[str, Any] = {
                "serve": supervisor.serve,
                "api": supervisor.api,
                "scheduler": supervisor.scheduler,
            }
            role = roles[args.command]
            return int(role(args))
        if args.command in CLIENT_HELP:  # the only commands of nectar.cli.remote (not imported by the others)
            from nectar.cli.remote import cmd_download, cmd_submit

            return int({"submit": cmd_submit, "download": cmd_download}[args.command](args))
        from nectar.cli.local import cmd_cancel, cmd_chains, cmd_run, cmd_status, cmd_token, cmd_worker
        from nectar.cli.schedules import cmd_backfill, cmd_clock, cmd_schedules
        from nectar.cli.triggers import cmd_triggers

        if args.command == "run":
            if args.local_scheduler and args.scheduler_url:
                parser.error("--local-scheduler and --scheduler-url: give one")
            return cmd_run(args, extra)
        if args.command == "worker":  # checked as serve's --workers is, before anything starts
            from nectar.config import WORKERS_MOST, whole_number

            args.workers = whole_number("--workers (env NECTAR_WORKERS)", args.workers, 1, WORKERS_MOST)
        handler = {
            "chains": cmd_chains,
            "status": cmd_status,
            "cancel": cmd_cancel,
            "token": cmd_token,
            "worker": cmd_worker,
            "schedules": cmd_schedules,
            "backfill": cmd_backfill,
            "triggers": cmd_triggers,
            "clock": cmd_clock,
        }[args.command]
        return handler(args)
    except InvalidParameters as exc:
        for name, messages in sorted(exc.errors.items()):  # "_task": the task as made of them all, not a flag
            where = "the task" if name.startswith("_") else f"--{name}"
            print(f"nectar: {where}: {'; '.join(messages)}", file=sys.stderr)
        return 2
    except NectarError as exc:
        print(f"nectar: {exc}", file=sys.stderr)
        return 2
