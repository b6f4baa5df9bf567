"""Many runs at once: a CSV's rows submitted with bounded concurrency and followed until each ends."""

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

FINAL_STATES = frozenset({"DONE", "FAILED", "CANCELLED", "REJECTED", "ERROR"})


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
    """Submit the rows that have no key yet and, with ``wait_done``, poll every accepted one until it ends (see
    :func:`submit_rows`)."""
    to_submit = iter([row for row in results if row.key is None and not row.final])
    busy: dict[Future[Any], tuple[RowResult, str]] = {}
    next_poll = time.monotonic()
    with thread_pool(concurrency) as pool:
        while True:
            submitting = sum(1 for _, kind in busy.values() if kind == "submit")
            for row in _take(to_submit, concurrency - submitting):
                row.started = time.monotonic()
                busy[pool.submit(client.submit, ref, row.params)] = (row, "submit")
            if wait_done and time.monotonic() >= next_poll:
                polling = {row.row for row, kind in busy.values() if kind == "poll"}
                for row in results:
                    if row.key and not row.final and row.row not in polling:
                        busy[pool.submit(client.status, row.key)] = (row, "poll")
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
                row, kind = busy.pop(future)
                (_submitted if kind == "submit" else _polled)(row, future)
            if done and on_change:
                on_change(results)
    return results


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
    elif state == "CANCELLED":
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
