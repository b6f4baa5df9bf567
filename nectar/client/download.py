"""Every finished output of a task fetched to a folder: whole files only, resumable by their digests."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

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


#: the file in a key's folder naming its outputs, a line each, written once every one was fetched whole (what
#: ``--resume`` reads before it asks the key's status)
LISTED = ".outputs"
#: the names a key's folder holds of its own, which no output may take
OWN_NAMES = frozenset({"params.json", LISTED})


def download(
    client: NectarClient,
    ref: str,
    dest: Path,
    resume: bool = True,
    concurrency: int = 8,
    on_change: Callable[[DownloadReport], None] | None = None,
) -> DownloadReport:
    """Fetch the outputs of every DONE run of ``ref`` to ``dest/<md5>/``, each under its own name as the status names
    it (a NectarTask's ``out.txt``; a plain luigi task's own files by their names), with ``params.json``.

    A file is written to a temporary name and renamed when whole, then a ``<name>.md5`` beside it records its digest,
    and once all are, :data:`LISTED` names them; with ``resume``, a key whose listed files all match their digests is
    skipped without a request, and of the others a file whose digest matches is not fetched again.
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
    """Fetch the outputs of one key unless ``resume`` and each is already complete; whether any was fetched."""
    folder = dest / TargetKey.parse(key).digest  # a key of the expected shape only: no path leaves ``dest``
    if resume and _listed_complete(folder):
        return False
    status = client.status(key)
    named = named_outputs(status)
    folder.mkdir(parents=True, exist_ok=True)
    for name, url in named:
        path = folder / name
        if resume and complete(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)  # a partition's folders (named_outputs)
        digest, _ = client.retrying(functools.partial(_fetch, client, url, path))
        _write_atomically(_sidecar(path), f"{digest}  {path.name}\n")
    _write_atomically(folder / "params.json", json.dumps(dict(params), indent=2, sort_keys=True) + "\n")
    _write_atomically(folder / LISTED, "".join(f"{name}\n" for name, _ in named))
    return True


def named_outputs(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(name, URL)`` of each output a status lists, named as its target ends (``out.txt``, ``d_e_d.txt``); where
    two end alike (partitions: ``.../date=1/part-0000.csv``, ``.../date=2/part-0000.csv``), each named by its path
    from the folder their targets share (``date=1/part-0000.csv``). A ValueError saying why where the status has none
    to fetch (not DONE now, no output, one without a link, one with no name a file can take here)."""
    outputs = status.get("outputs") or []
    if status.get("job_status") != "DONE" or not outputs or not status.get("resource_url"):
        # why, as the status says it: its error first (MISSING: the output deleted since, named whole), else the note
        # on its first output (a DONE output outside the folders the API serves)
        why = status.get("error") or status.get("resource_note")
        raise ValueError(f"no download URL: the key is {status.get('job_status')} now" + (f": {why}" if why else ""))
    found = []  # (the target's path, with an S3 target's bucket first; the target; its URL)
    for output in outputs:
        target = str(output.get("target") or "")
        if not output.get("url"):
            raise ValueError(f"no download URL for its output {target}: {output.get('note')}")
        split = urlsplit(target) if "://" in target else None
        where = posixpath.join("/", split.netloc + split.path) if split is not None else os.path.abspath(target)
        found.append((where, target, str(output["url"])))
    wheres = [where for where, _, _ in found]
    ends = [posixpath.basename(where) for where in wheres]
    shared = posixpath.commonpath(wheres) if len(set(ends)) < len(ends) else None
    named = []
    for where, target, url in found:
        name = posixpath.basename(where) if shared is None else posixpath.relpath(where, shared)
        parts = name.split("/")
        if any(part in {"", ".", ".."} for part in parts) or parts[0] in OWN_NAMES or name.endswith(".md5"):
            raise ValueError(f"its output {target} has no name a file of its own can take here ({name!r})")
        named.append((name, url))
    return named


def _listed_complete(folder: Path) -> bool:
    """Whether every output :data:`LISTED` in ``folder`` was downloaded whole (False where none is listed)."""
    try:
        names = (folder / LISTED).read_text().split("\n")
    except OSError:
        return False
    names = [name for name in names if name]
    return bool(names) and all(complete(folder / name) for name in names)


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
