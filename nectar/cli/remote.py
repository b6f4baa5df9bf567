"""The commands that talk to a server's API: submit a CSV's rows (or a prefix's objects) as runs, download outputs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nectar.cli.local import table
from nectar.errors import InvalidSetting

if TYPE_CHECKING:
    from nectar.client import DownloadReport, NectarClient, Progress, RowResult


def _client(args: argparse.Namespace) -> NectarClient:
    from nectar.client import Backoff, NectarClient

    return NectarClient(args.server, args.token, Backoff(attempts=max(1, args.attempts)))


def _submit_table(ref: str, results: Sequence[RowResult]) -> str:
    from nectar.client import row_counts
    from nectar.keys import TargetKey

    rows = [["ROW", "STATE", "ATTEMPTS", "SECONDS", "KEY / ERRORS"]]
    for result in results:
        digest = TargetKey.parse(result.key).digest if result.key else ""
        detail = " ".join((result.detail or "").split())  # one line, whatever the error said
        seconds = f"{result.seconds:.1f}"
        rows.append([str(result.row), result.state, str(result.attempts), seconds, f"{digest}  {detail}".strip()])
    _, counts = row_counts(results)
    totals = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()))
    return f"{table(rows)}\n\nKEY: chains/{ref}/<KEY>/out.txt\n{len(results)} rows: {totals or 'none'}"


#: the options that choose what ``nectar submit --from-prefix`` makes of the objects under the prefix
PREFIX_OPTIONS = ("param", "glob", "batch_size", "relative")


def add_submit_sources(submit: argparse.ArgumentParser) -> None:
    """Where ``nectar submit`` takes its rows from: a CSV's lines, or the objects under a prefix (listed by the
    server, ``POST /api/batches``)."""
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("--params-csv", help="header: parameter names; an empty cell: the default")
    source.add_argument(
        "--from-prefix", metavar="URI", help="a run per object under s3://bucket/prefix/ or a folder of the server"
    )
    submit.add_argument("--param", help="with --from-prefix: the parameter given each object's URI (required)")
    submit.add_argument("--glob", help="with --from-prefix: only the paths below the prefix it matches (**/*.csv)")
    submit.add_argument(
        "--batch-size", type=int, help="with --from-prefix: a run per group of up to N objects (a list parameter)"
    )
    submit.add_argument(
        "--relative", action="store_true", help="with --from-prefix: give the path below the prefix, not the URI"
    )


def _submitted_rows(args: argparse.Namespace, client: NectarClient) -> list[RowResult]:
    """The rows to follow: a CSV's, each to submit, or those the server made of the objects under a prefix."""
    from nectar.client import RowResult, prefix_rows, read_rows

    given = {name: getattr(args, name) for name in PREFIX_OPTIONS if getattr(args, name) not in (None, False)}
    if args.from_prefix is None:
        if given:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ValueError(f"{flags}: only with --from-prefix")
        rows = read_rows(Path(args.params_csv))
        client.task(args.task)  # an unknown task or a refused token stops here, before any row
        return [RowResult(number, dict(params)) for number, params in enumerate(rows, start=1)]
    if "param" not in given:
        raise ValueError("--from-prefix needs --param, the parameter given each object's URI")
    param = given.pop("param")
    return prefix_rows(client, args.task, args.from_prefix, param, **given)


def cmd_submit(args: argparse.Namespace) -> int:
    from nectar.client import ApiError, Progress, follow_rows, row_counts, split_ref

    client = _client(args)
    try:
        split_ref(args.task)
        results = _submitted_rows(args, client)
    except (ValueError, OSError) as exc:
        print(f"nectar submit: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        if exc.status != 422:
            raise
        print(f"nectar submit: {exc.describe()}", file=sys.stderr)
        return 2
    wait_done = not args.no_wait
    progress = Progress(len(results), "row")
    results = follow_rows(
        client,
        args.task,
        results,
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
    from nectar.client import download

    progress: Progress | None = None

    def show(report: DownloadReport) -> None:
        nonlocal progress
        from nectar.client import Progress

        progress = progress or Progress(report.total, "file")
        progress.update(sum(report.counts.values()), report.counts)

    dest = Path(args.dest)
    try:  # before any request: a folder that cannot be made is the command's usage, named (status 2)
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there or on its way (FileExistsError, NotADirectoryError), no permission
        raise InvalidSetting(f"--dest {dest}: cannot be the folder the outputs go to: {exc.strerror}") from None
    report = download(_client(args), args.task, dest, resume=args.resume, concurrency=args.concurrency, on_change=show)
    if progress is not None:
        progress.close()
    for key, reason in sorted(report.failed.items()):
        print(f"failed {key}: {reason}")
    counts = ", ".join(f"{name} {count}" for name, count in report.counts.items())
    print(f"{counts} of {report.total} DONE outputs of {args.task} in {dest}")
    return 1 if report.failed else 0


def client_command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
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
