"""Many runs at once: a CSV's rows submitted with bounded concurrency and followed until each ends.

The rows are followed with one listing of the task's runs a poll (``GET /api/runs``, paged only until every
followed key is seen), not a status call per row: a row's status is asked once, when the listing shows its run
ended (the status has the last word: the output, the failed step), and at each poll only for a row whose run the
listing cannot show (one queued before the batch began, or a server whose clock is far behind this one's).
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nectar.client.api import Accepted, ApiError, NectarClient, split_ref

T = TypeVar("T")

#: MISSING: a key whose run ended DONE but whose output was deleted since (no run is queued to make it again)
FINAL_STATES = frozenset({"DONE", "FAILED", "CANCELLED", "MISSING", "REJECTED", "ERROR"})
#: the listing asks for runs queued since this many seconds before the rows were followed: a server clock behind
#: this one's by less still lists them
LISTING_SLACK = 300.0


@dataclass
class RowResult:
    """One row of a batch: its parameters and, as it goes, its key and state."""

    row: int
    params: dict[str, Any]
    state: str = "SUBMITTING"
    key: str | None = None
    attempts: int = 0
    #: why it was rejected, failed or given up on
    detail: str | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def end(self, state: str, detail: str | None = None) -> None:
        self.state, self.detail, self.ended = state, detail, time.monotonic()


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows as parameters: the header names them, an empty cell leaves one out (its default).

    Blank lines are no rows; a row of one empty value is written ``""``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header or not all(header) or len(set(header)) != len(header):
            raise ValueError(f"{path}: the first line must name each parameter once, got {header}")
        rows = []
        for line, cells in enumerate(reader, start=2):
            if not cells:  # a blank line
                continue
            if len(cells) > len(header):
                raise ValueError(f"{path}:{line}: {len(cells)} values for {len(header)} columns")
            rows.append({name: value for name, value in zip(header, cells, strict=False) if value != ""})
    return rows


def submit_rows(
    client: NectarClient,
    ref: str,
    rows: Sequence[Mapping[str, Any]],
    concurrency: int = 8,
    wait_done: bool = True,
    poll_interval: float = 0.5,
    on_change: Callable[[Sequence[RowResult]], None] | None = None,
) -> list[RowResult]:
    """Submit every row (``concurrency`` at a time) and, with ``wait_done``, poll each accepted one every
    ``poll_interval`` seconds until it is DONE, FAILED or CANCELLED. ``on_change`` sees the rows as they go."""
    split_ref(ref)
    results = [RowResult(number, dict(params)) for number, params in enumerate(rows, start=1)]
    return follow_rows(client, ref, results, concurrency, wait_done, poll_interval, on_change)


def prefix_rows(client: NectarClient, ref: str, from_prefix: str, param: str, **options: Any) -> list[RowResult]:
    """The rows of ``POST /api/batches`` (a run per object under ``from_prefix``, see
    :meth:`NectarClient.batch_from_prefix`), as :func:`follow_rows` takes them: the accepted ones with their key,
    the refused ones ended REJECTED, those the full queue refused (503) left to submit again one by one."""
    data, attempts = client.batch_from_prefix(ref, from_prefix, param, **options)
    results = []
    for answered in data["rows"]:
        row = RowResult(int(answered["row"]), dict(answered["params"]), attempts=attempts)
        if answered["status"] in (200, 202):
            row.key, row.state = answered["key"], str(answered["job_status"])
            if row.final:
                row.end(row.state)
        elif answered["status"] != 503:
            row.errors = answered.get("errors") or {}
            row.end("REJECTED", ApiError(answered["status"], answered["message"], row.errors).describe())
        results.append(row)
    return results


def follow_rows(
    client: NectarClient,
    ref: str,
    results: list[RowResult],
    concurrency: int = 8,
    wait_done: bool = True,
    poll_interval: float = 0.5,
    on_change: Callable[[Sequence[RowResult]], None] | None = None,
) -> list[RowResult]:
    """Submit the rows that have no key yet and, with ``wait_done``, follow every accepted one until it ends (see
    :func:`submit_rows` and the module)."""
    to_submit = iter([row for row in results if row.key is None and not row.final])
    busy: dict[Future[Any], tuple[RowResult | None, str]] = {}
    since = time.time() - LISTING_SLACK
    #: rows the listing did not show: their status is asked at each poll
    unlisted: set[int] = set()
    #: the keys the listing in flight looks for
    listing: set[str] = set()
    next_poll = time.monotonic()
    with thread_pool(concurrency) as pool:
        while True:
            submitting = sum(1 for _, kind in busy.values() if kind == "submit")
            for row in _take(to_submit, concurrency - submitting):
                row.started = time.monotonic()
                busy[pool.submit(client.submit, ref, row.params)] = (row, "submit")
            if wait_done and time.monotonic() >= next_poll:
                polling = _polling(busy)
                followed = [row for row in results if row.key and not row.final and row.row not in polling]
                for row in followed:
                    if row.row in unlisted:
                        busy[pool.submit(client.status, str(row.key))] = (row, "poll")
                listed = [row for row in followed if row.row not in unlisted]
                if listed and "list" not in {kind for _, kind in busy.values()}:
                    listing = {str(row.key) for row in listed}
                    busy[pool.submit(listed_runs, client, ref, since, listing)] = (None, "list")
                next_poll = time.monotonic() + poll_interval
            waiting = wait_done and any(row.key and not row.final for row in results)
            if not busy and not waiting:
                break
            timeout = max(0.0, next_poll - time.monotonic()) if waiting else None
            if not busy:
                time.sleep(timeout or 0.0)
                continue
            done, _ = wait(busy, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                owner, kind = busy.pop(future)
                if owner is not None:
                    (_submitted if kind == "submit" else _polled)(owner, future)
                    continue
                found, polling = _found(future), _polling(busy)
                asked = [row for row in _listed(results, listing, found, unlisted) if row.row not in polling]
                busy.update({pool.submit(client.status, str(row.key)): (row, "poll") for row in asked})
                # the next listing starts at the oldest run still going (by the server's own clock): it lists what
                # is left, not every run of the batch again
                going = [float(run["queued_at"]) for run in found.values() if run["job_status"] not in FINAL_STATES]
                since = min(going, default=since)
            if done and on_change:
                on_change(results)
    return results


def listed_runs(client: NectarClient, ref: str, since: float, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The newest run of each of ``keys`` among the runs of ``ref`` queued since ``since``, by key: one listing,
    paged only until every key is seen."""
    chain_type, chain, task = split_ref(ref)
    found: dict[str, dict[str, Any]] = {}
    for run in client.runs(chain_type=chain_type, chain=chain, task=task, since=repr(since)):
        key = str(run.get("key"))
        if key in keys and key not in found:  # newest first: the first one is the key's latest run
            found[key] = run
            if len(found) == len(keys):
                break
    return found


def _polling(busy: Mapping[Future[Any], tuple[RowResult | None, str]]) -> set[int]:
    """The rows whose status is being asked."""
    return {row.row for row, kind in busy.values() if row is not None and kind == "poll"}


def _found(future: Future[Any]) -> dict[str, dict[str, Any]]:
    """What a listing found; nothing if it failed (its rows are then left to their status)."""
    try:
        found: dict[str, dict[str, Any]] = future.result()
    except ApiError:
        return {}
    return found


def _listed(
    results: Sequence[RowResult], keys: set[str], found: dict[str, dict[str, Any]], unlisted: set[int]
) -> list[RowResult]:
    """The rows whose run the listing of ``keys`` shows ended, to ask their status; a row's state from the listing
    while its run goes on; the rows it does not show left to their status from now on."""
    ended = []
    for row in results:
        if row.key not in keys or row.final or row.row in unlisted:
            continue
        run = found.get(row.key)
        if run is None:
            unlisted.add(row.row)
            ended.append(row)
        elif str(run.get("job_status")) in FINAL_STATES:
            ended.append(row)
        else:
            row.state = str(run.get("job_status"))
    return ended


@contextlib.contextmanager
def thread_pool(concurrency: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose queued work is dropped if the caller stops early (Ctrl-C), not waited for."""
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _take(items: Iterator[T], count: int) -> list[T]:
    return [item for _, item in zip(range(max(0, count)), items, strict=False)]


def _submitted(row: RowResult, future: Future[Any]) -> None:
    try:
        submission: Accepted = future.result()
    except ApiError as exc:
        row.attempts, row.errors = exc.attempts, exc.errors
        row.end("REJECTED" if exc.status is not None and 400 <= exc.status < 500 else "ERROR", exc.describe())
        return
    row.key, row.attempts, row.state = submission.key, submission.attempts, submission.job_status
    if row.final:
        row.end(row.state)


def _polled(row: RowResult, future: Future[Any]) -> None:
    try:
        status: dict[str, Any] = future.result()
    except ApiError as exc:
        row.end("ERROR", f"status: {exc.describe()}")
        return
    state = str(status.get("job_status"))
    if state == "FAILED":
        row.end(state, f"failed at {status.get('failed_step')}: {status.get('error')}")
    elif state in ("CANCELLED", "MISSING"):
        row.end(state, status.get("error"))
    elif state in FINAL_STATES:
        row.end(state)
    else:
        row.state = state


def row_counts(rows: Iterable[RowResult], wait_done: bool = True) -> tuple[int, dict[str, int]]:
    """How many rows are through (final; or accepted, without ``wait_done``), and how many are in each state."""
    rows = list(rows)
    through = sum(1 for row in rows if row.final or (not wait_done and row.key))
    return through, dict(Counter(row.state for row in rows))
