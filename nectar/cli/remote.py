"""The commands that talk to a server's API: submit a CSV's rows as runs, download every finished output."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nectar.cli.local import table
from nectar.keys import TargetKey

if TYPE_CHECKING:
    from nectar.client import DownloadReport, NectarClient, Progress, RowResult


def _client(args: argparse.Namespace) -> NectarClient:
    from nectar.client import Backoff, NectarClient

    return NectarClient(args.server, args.token, Backoff(attempts=max(1, args.attempts)))


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
    return f"{table(rows)}\n\nKEY: chains/{ref}/<KEY>/out.txt\n{len(results)} rows: {totals or 'none'}"


def cmd_submit(args: argparse.Namespace) -> int:
    from nectar.client import Progress, read_rows, row_counts, split_ref, submit_rows

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
    results = submit_rows(
        client,
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
    from nectar.client import download

    progress: Progress | None = None

    def show(report: DownloadReport) -> None:
        nonlocal progress
        from nectar.client import Progress

        progress = progress or Progress(report.total, "file")
        progress.update(sum(report.counts.values()), report.counts)

    dest = Path(args.dest)
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
