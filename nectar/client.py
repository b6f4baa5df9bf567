"""A client of the Datanectar API: submit many runs and follow them, download every finished output.

Every call goes through one retry loop: a 502/503/504 answer is tried again after its
``Retry-After`` (bounded), a connection error or timeout after an exponential backoff, at most
``RetryPolicy.attempts`` times. Submitting again is safe: identical parameters share one run.
Any other answer that is not a success (a 422 naming the bad fields, a 404...) is final.
Threads share the client; each has its own HTTP sessions.
"""

from __future__ import annotations

import contextlib
import csv
import email.utils
import hashlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import requests
from tqdm import tqdm

from nectar.errors import NectarError
from nectar.keys import TargetKey, is_name

T = TypeVar("T")
#: states a row ends in: the run's own, or REJECTED (a 4xx answer) and ERROR (gave up, or a 5xx)
FINAL_STATES = frozenset({"DONE", "FAILED", "CANCELLED", "REJECTED", "ERROR"})
RETRIED_STATUSES = frozenset({502, 503, 504})
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
CHUNK = 1 << 16


class ApiError(NectarError):
    """An answer the client cannot use: its HTTP status (None: none came), message and per-field errors."""

    def __init__(self, status: int | None, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or {}
        self.attempts = 1

    def describe(self) -> str:
        if not self.errors:
            return str(self)
        return "; ".join(f"{name}: {', '.join(map(str, msgs))}" for name, msgs in sorted(self.errors.items()))


class _Retry(Exception):
    """An answer worth trying again, after ``wait`` seconds."""

    def __init__(self, error: ApiError, wait: float | None) -> None:
        self.error, self.wait = error, wait


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    #: the wait after the first connection error, doubled after each next one, at most ``max_wait``
    backoff: float = 0.5
    #: a Retry-After is honoured up to this many seconds
    max_wait: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempt + 1``, up to a quarter more at random (clients told alike spread out)."""
        wanted = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
        return min(max(wanted, 0.0), self.max_wait) * random.uniform(1.0, 1.25)


@dataclass(frozen=True)
class Submission:
    key: str
    job_status: str
    run_id: str | None
    created: bool
    attempts: int


@dataclass
class RowResult:
    """One row of a batch: its parameters and, as it goes, its key and state."""

    row: int
    params: dict[str, str]
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


@dataclass
class DownloadReport:
    total: int = 0
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: key -> reason
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {"fetched": len(self.fetched), "skipped": len(self.skipped), "failed": len(self.failed)}


def split_ref(ref: str) -> tuple[str, str, str]:
    """``<type>/<chain>/<Task>`` as its three names; ValueError otherwise."""
    parts = ref.strip("/").split("/")
    if len(parts) != 3 or not all(is_name(part) for part in parts):
        raise ValueError(f"{ref!r} is not <type>/<chain>/<Task> (names of letters, digits and _)")
    return parts[0], parts[1], parts[2]


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


def _retry_after(answer: requests.Response) -> float | None:
    value = answer.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _error(answer: requests.Response) -> ApiError:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return ApiError(answer.status_code, str(body.get("message") or answer.reason), body.get("errors"))
    return ApiError(answer.status_code, f"{answer.status_code} {answer.reason}: {answer.text[:200]}")


class NectarClient:
    """The API of one Datanectar server, with a bearer ``token`` if it wants one."""

    def __init__(
        self, server: str, token: str | None = None, retry: RetryPolicy | None = None, timeout: float = 30.0
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._local = threading.local()

    def _session(self, api: bool = True) -> requests.Session:
        """This thread's session: with the token for the API, without it for downloads (S3 wants none)."""
        name = "api" if api else "files"
        session: requests.Session | None = getattr(self._local, name, None)
        if session is None:
            session = requests.Session()
            if api and self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            setattr(self._local, name, session)
        return session

    def _retrying(self, action: Callable[[], T]) -> tuple[T, int]:
        """``action()`` and the attempts it took, tried again on transient failures; ApiError at the end."""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return action(), attempt
            except _Retry as exc:
                error, retry_after = exc.error, exc.wait
            except TRANSIENT_ERRORS as exc:
                error, retry_after = ApiError(None, f"{type(exc).__name__}: {exc}"), None
            if attempt < self.retry.attempts:
                time.sleep(self.retry.delay(attempt, retry_after))
        error.attempts = self.retry.attempts
        raise error

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[Any, requests.Response, int]:
        """An API call: the answer's ``data``, the answer and the attempts; ApiError unless it succeeded."""

        def once() -> requests.Response:
            answer = self._session().request(method, f"{self.server}{path}", timeout=self.timeout, **kwargs)
            if answer.status_code in RETRIED_STATUSES:
                raise _Retry(_error(answer), _retry_after(answer))
            return answer

        answer, attempts = self._retrying(once)
        if not answer.ok:
            error = _error(answer)
            error.attempts = attempts
            raise error
        try:
            return answer.json()["data"], answer, attempts
        except (ValueError, KeyError, TypeError):
            raise ApiError(answer.status_code, f"not an answer of the Datanectar API: {answer.text[:200]!r}") from None

    def task(self, ref: str) -> dict[str, Any]:
        """A task's description (its parameters); ApiError 404 if the server has no such task."""
        data, _, _ = self.request("GET", f"/api/chains/{'/'.join(split_ref(ref))}")
        return dict(data)

    def submit(self, ref: str, params: Mapping[str, Any]) -> Submission:
        data, _, attempts = self.request("POST", f"/api/chains/{'/'.join(split_ref(ref))}", json=dict(params))
        return Submission(data["key"], data["job_status"], data.get("run_id"), bool(data.get("created")), attempts)

    def status(self, key: str) -> dict[str, Any]:
        data, _, _ = self.request("GET", "/api/chainstatus", params={"chain": key})
        return dict(data)

    def runs(self, page_size: int = 500, **filters: str) -> Iterator[dict[str, Any]]:
        """Every run matching ``filters`` (chain_type, chain, task, job_status, since, until), newest first."""
        page = 1
        while True:
            query = {**filters, "page": page, "page_size": page_size}
            data, answer, _ = self.request("GET", "/api/runs", params=query)
            yield from data
            pagination = json.loads(answer.headers.get("X-Pagination") or "{}")
            if not pagination.get("next_page"):
                return
            page = int(pagination["next_page"])

    # --- batches ------------------------------------------------------------------------

    def submit_rows(
        self,
        ref: str,
        rows: Sequence[Mapping[str, str]],
        concurrency: int = 8,
        wait_done: bool = True,
        poll_interval: float = 0.5,
        on_change: Callable[[Sequence[RowResult]], None] | None = None,
    ) -> list[RowResult]:
        """Submit every row (``concurrency`` at a time) and, with ``wait_done``, poll each accepted one every
        ``poll_interval`` seconds until it is DONE, FAILED or CANCELLED. ``on_change`` sees the rows as they go."""
        split_ref(ref)
        results = [RowResult(number, dict(params)) for number, params in enumerate(rows, start=1)]
        to_submit = iter(results)
        busy: dict[Future[Any], tuple[RowResult, str]] = {}
        next_poll = time.monotonic()
        with _pool(concurrency) as pool:
            while True:
                submitting = sum(1 for _, kind in busy.values() if kind == "submit")
                for row in _take(to_submit, concurrency - submitting):
                    row.started = time.monotonic()
                    busy[pool.submit(self.submit, ref, row.params)] = (row, "submit")
                if wait_done and time.monotonic() >= next_poll:
                    polling = {row.row for row, kind in busy.values() if kind == "poll"}
                    for row in results:
                        if row.key and not row.final and row.row not in polling:
                            busy[pool.submit(self.status, row.key)] = (row, "poll")
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

    def download(
        self,
        ref: str,
        dest: Path,
        resume: bool = True,
        concurrency: int = 8,
        on_change: Callable[[DownloadReport], None] | None = None,
    ) -> DownloadReport:
        """Fetch the output of every DONE run of ``ref`` to ``dest/<md5>/out.txt`` (with ``params.json``).

        A file is written to a temporary name and renamed when whole, then an ``out.txt.md5`` beside it
        records its digest; with ``resume``, a file whose digest matches is skipped without a request.
        """
        chain_type, chain, task = split_ref(ref)
        runs: dict[str, Mapping[str, Any]] = {}
        for run in self.runs(chain_type=chain_type, chain=chain, task=task, job_status="DONE"):
            runs.setdefault(run["key"], run.get("params") or {})
        report = DownloadReport(total=len(runs))
        dest.mkdir(parents=True, exist_ok=True)
        with _pool(concurrency) as pool:
            futures = {pool.submit(self._download_one, key, params, dest, resume): key for key, params in runs.items()}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    key = futures.pop(future)
                    try:
                        (report.fetched if future.result() else report.skipped).append(key)
                    except (ApiError, OSError, ValueError) as exc:
                        report.failed[key] = exc.describe() if isinstance(exc, ApiError) else str(exc)
                if on_change:
                    on_change(report)
        return report

    def _download_one(self, key: str, params: Mapping[str, Any], dest: Path, resume: bool) -> bool:
        """Fetch one output unless ``resume`` and it is already complete; whether it was fetched."""
        target = TargetKey.parse(key)  # a key of the expected shape only: no path leaves ``dest``
        path = dest / target.digest / target.filename
        if resume and complete(path):
            return False
        status = self.status(key)
        url = status.get("resource_url")
        if not url:
            raise ValueError(f"no download URL: the key is {status.get('job_status')} now")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, _ = self._retrying(lambda: self._fetch(url, path))
        _write_atomically(path.parent / "params.json", json.dumps(dict(params), indent=2, sort_keys=True) + "\n")
        _write_atomically(_sidecar(path), f"{digest}  {path.name}\n")
        return True

    def _fetch(self, url: str, path: Path) -> str:
        """Stream ``url`` to ``path`` through a temporary file in its folder; the content's MD5."""
        with self._session(api=False).get(url, stream=True, timeout=self.timeout) as answer:
            if answer.status_code in RETRIED_STATUSES:
                raise _Retry(_error(answer), _retry_after(answer))
            if not answer.ok:
                raise _error(answer)
            expected = answer.headers.get("Content-Length")
            md5, size = hashlib.md5(usedforsecurity=False), 0
            with _temporary(path) as (handle, temp):
                for chunk in answer.iter_content(CHUNK):
                    handle.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                if expected is not None and int(expected) != size:
                    raise requests.ConnectionError(f"{size} bytes received of {expected}")
                handle.flush()
                os.fsync(handle.fileno())
                os.replace(temp, path)
        return md5.hexdigest()


@contextlib.contextmanager
def _pool(concurrency: int) -> Iterator[ThreadPoolExecutor]:
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
        submission: Submission = future.result()
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


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{path.name}.md5")


def file_md5(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
    return md5.hexdigest()


def complete(path: Path) -> bool:
    """Whether ``path`` was downloaded whole: its content matches the digest recorded beside it."""
    try:
        recorded = _sidecar(path).read_text().split()[0]
        return file_md5(path) == recorded
    except (OSError, IndexError):
        return False


class _temporary:
    """A temporary file beside ``path``, opened for writing; removed on exit unless renamed to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> tuple[IO[bytes], Path]:
        self.temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.part")
        self.handle = self.temp.open("xb")  # the umask's permissions, unlike mkstemp's 0600
        return self.handle, self.temp

    def __exit__(self, *exc: object) -> None:
        self.handle.close()
        self.temp.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    with _temporary(path) as (handle, temp):
        handle.write(text.encode())
        handle.flush()
        os.replace(temp, path)


class Progress:
    """A tqdm bar on a terminal; elsewhere (a pipe, a log) a plain line at most every ``interval`` seconds."""

    def __init__(self, total: int, unit: str, file: IO[str] | None = None, interval: float = 1.0) -> None:
        self.total, self.unit, self.interval = total, unit, interval
        self.file = file or sys.stderr
        self.started = self.printed_at = time.monotonic()
        self.line = ""
        self.bar = tqdm(total=total, unit=unit, file=self.file, dynamic_ncols=True) if self.file.isatty() else None

    def update(self, done: int, counts: Mapping[str, int]) -> None:
        postfix = ", ".join(f"{state} {count}" for state, count in sorted(counts.items()) if count)
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(done - self.bar.n)
            return
        elapsed = time.monotonic() - self.started
        self.line = tqdm.format_meter(done, self.total, elapsed, unit=self.unit, postfix=postfix, ascii=True)
        if done == self.total or time.monotonic() - self.printed_at >= self.interval:
            self._print()

    def _print(self) -> None:
        if self.line:
            print(self.line, file=self.file, flush=True)
        self.line, self.printed_at = "", time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._print()


def row_counts(rows: Iterable[RowResult], wait_done: bool = True) -> tuple[int, dict[str, int]]:
    """How many rows are through (final; or accepted, without ``wait_done``), and how many are in each state."""
    rows = list(rows)
    through = sum(1 for row in rows if row.final or (not wait_done and row.key))
    return through, dict(Counter(row.state for row in rows))
