"""The HTTP client of the Datanectar API: one retry loop for every call, and the answers' ``data``.

A 502/503/504 answer is tried again after its ``Retry-After`` (bounded), a connection error or
timeout after an exponential backoff, at most ``Backoff.attempts`` times. Submitting again is safe:
identical parameters share one run. Any other answer that is not a success (a 422 naming the bad
fields, a 404...) is final. Threads share the client; each has its own HTTP sessions.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from nectar.errors import NectarError
from nectar.keys import is_name

T = TypeVar("T")

RETRIED_STATUSES = frozenset({502, 503, 504})
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


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


class Retryable(Exception):
    """An answer worth trying again, after ``wait`` seconds."""

    def __init__(self, error: ApiError, wait: float | None) -> None:
        self.error, self.wait = error, wait


@dataclass(frozen=True)
class Backoff:
    """How often and how long the client tries a call again."""

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
class Accepted:
    """The API's answer to a submission: the run's key, state and id, and the attempts the call took."""

    key: str
    job_status: str
    run_id: str | None
    created: bool
    attempts: int


def split_ref(ref: str) -> tuple[str, str, str]:
    """``<type>/<chain>/<Task>`` as its three names; ValueError otherwise."""
    parts = ref.strip("/").split("/")
    if len(parts) != 3 or not all(is_name(part) for part in parts):
        raise ValueError(f"{ref!r} is not <type>/<chain>/<Task> (names of letters, digits and _)")
    return parts[0], parts[1], parts[2]


def retry_after(answer: requests.Response) -> float | None:
    value = answer.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def error_of(answer: requests.Response) -> ApiError:
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
        self, server: str, token: str | None = None, retry: Backoff | None = None, timeout: float = 30.0
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.retry = retry or Backoff()
        self.timeout = timeout
        self._local = threading.local()

    def session(self, api: bool = True) -> requests.Session:
        """This thread's session: with the token for the API, without it for downloads (S3 wants none)."""
        name = "api" if api else "files"
        session: requests.Session | None = getattr(self._local, name, None)
        if session is None:
            session = requests.Session()
            if api and self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            setattr(self._local, name, session)
        return session

    def retrying(self, action: Callable[[], T]) -> tuple[T, int]:
        """``action()`` and the attempts it took, tried again on transient failures; ApiError at the end."""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return action(), attempt
            except Retryable as exc:
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
            answer = self.session().request(method, f"{self.server}{path}", timeout=self.timeout, **kwargs)
            if answer.status_code in RETRIED_STATUSES:
                raise Retryable(error_of(answer), retry_after(answer))
            return answer

        answer, attempts = self.retrying(once)
        if not answer.ok:
            error = error_of(answer)
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

    def submit(self, ref: str, params: Mapping[str, Any]) -> Accepted:
        data, _, attempts = self.request("POST", f"/api/chains/{'/'.join(split_ref(ref))}", json=dict(params))
        return Accepted(data["key"], data["job_status"], data.get("run_id"), bool(data.get("created")), attempts)

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

    def batch_from_prefix(self, ref: str, from_prefix: str, param: str, **options: Any) -> tuple[dict[str, Any], int]:
        """``POST /api/batches``: a run of ``ref`` per object under ``from_prefix`` (``options``: params, glob,
        offset, limit, batch_size, relative); the answer's data (its rows) and the attempts it took."""
        split_ref(ref)
        body = {"task": ref, "from_prefix": from_prefix, "param": param, **options}
        data, _, attempts = self.request("POST", "/api/batches", json=body)
        return dict(data), attempts
