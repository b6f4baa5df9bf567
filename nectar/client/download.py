"""Every finished output of a task fetched to a folder: whole files only, resumable by their digests."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from nectar.client.api import RETRIED_STATUSES, ApiError, NectarClient, Retryable, error_of, retry_after, split_ref
from nectar.client.batch import thread_pool
from nectar.keys import TargetKey

CHUNK = 1 << 16


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


def download(
    client: NectarClient,
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
    for run in client.runs(chain_type=chain_type, chain=chain, task=task, job_status="DONE"):
        runs.setdefault(run["key"], run.get("params") or {})
    report = DownloadReport(total=len(runs))
    dest.mkdir(parents=True, exist_ok=True)
    with thread_pool(concurrency) as pool:
        futures = {pool.submit(_download_one, client, key, params, dest, resume): key for key, params in runs.items()}
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


def _download_one(client: NectarClient, key: str, params: Mapping[str, Any], dest: Path, resume: bool) -> bool:
    """Fetch one output unless ``resume`` and it is already complete; whether it was fetched."""
    target = TargetKey.parse(key)  # a key of the expected shape only: no path leaves ``dest``
    path = dest / target.digest / target.filename
    if resume and complete(path):
        return False
    status = client.status(key)
    url = status.get("resource_url")
    if not url:  # why, as the status says it: its error first (MISSING: the output deleted since, named whole), else
        # the note on its first output (a DONE output outside the folders the API serves)
        why = status.get("error") or status.get("resource_note")
        raise ValueError(f"no download URL: the key is {status.get('job_status')} now" + (f": {why}" if why else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, _ = client.retrying(lambda: _fetch(client, url, path))
    _write_atomically(path.parent / "params.json", json.dumps(dict(params), indent=2, sort_keys=True) + "\n")
    _write_atomically(_sidecar(path), f"{digest}  {path.name}\n")
    return True


def _fetch(client: NectarClient, url: str, path: Path) -> str:
    """Stream ``url`` to ``path`` through a temporary file in its folder; the content's MD5."""
    with client.session(api=False).get(url, stream=True, timeout=client.timeout) as answer:
        if answer.status_code in RETRIED_STATUSES:
            raise Retryable(error_of(answer), retry_after(answer))
        if not answer.ok:
            raise error_of(answer)
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
