"""A task's outputs where the task puts them, and which of them a status may hand out a download URL for.

A ``NectarTask``'s output is its ``out.txt`` in the store (known from its key, without instantiating
it). Any other task (a plain luigi task, or a NectarTask with its own ``output()``) is instantiated
from its run's parameters and its ``output()`` flattened (a target, a list or a dict of them). Of
these, a URL is handed out only for a file that exists: an ``S3Target`` in a bucket the service's S3
client reaches (presigned), a ``LocalTarget`` under a folder the settings allow (signed by the API,
see :data:`SIGNED_PATH_PREFIX`); any other output is listed with a note saying why it has no URL.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import luigi

from nectar.catalog.asked import run_outputs
from nectar.config import Settings
from nectar.errors import InvalidKey, NotFound
from nectar.keys import OUTPUT_FILE, TargetKey
from nectar.params import task_of_text
from nectar.registry import RunState
from nectar.status import DONE, JobStatus
from nectar.stores import TargetStore, get_store
from nectar.stores.local import hard_link_refused, is_hard_link
from nectar.stores.s3 import S3Store
from nectar.task import NectarTask, chain_module

if TYPE_CHECKING:
    from nectar.catalog.model import TaskInfo
    from nectar.service import Nectar

#: what the API signs for a local file outside the store: a store key starts with ``chains/``, so no
#: signature of one can be replayed as the other
SIGNED_PATH_PREFIX = "file:"
#: tasks whose output() is remembered (by class and key: instantiating one may be costly)
CACHED_TASKS = 1024


@dataclass(frozen=True)
class Output:
    """One output of a task: where it is (``target``), and how to download it, or why one cannot."""

    #: the absolute path or the URI the task names
    target: str
    #: a presigned S3 URL
    url: str | None = None
    #: a file of the local store, whose key the API signs
    key: TargetKey | None = None
    #: a real file under an allowed folder, whose absolute path the API signs
    path: str | None = None
    #: why there is no URL
    note: str | None = None
    #: the file is not there (the task's output does not exist)
    absent: bool = False


#: the outputs of a task whose chain no longer defines it, where its key has no ``out.txt`` (a NectarTask's)
UNKNOWN_CLASS = (
    "its chain no longer defines this task (removed or renamed since its run): what its outputs are cannot be known"
)


@functools.cache
def has_store_output(task_cls: type | None) -> bool:
    """Whether the task's output is its ``out.txt`` in the store (a NectarTask's own ``output()``).

    An unknown class (its chain removed since) is answered as before: by its key's ``out.txt``, and where there is
    none (a plain task's run made none), by :data:`UNKNOWN_CLASS` (:func:`status_outputs`): not a missing output.
    """
    return task_cls is None or (issubclass(task_cls, NectarTask) and task_cls.output is NectarTask.output)


def status_outputs(status: JobStatus, task_cls: type | None, store: TargetStore, settings: Settings) -> list[Output]:
    """The outputs of the task of ``status``, each with its download or the reason it has none."""
    key = status.key.with_file(OUTPUT_FILE)
    if has_store_output(task_cls):
        output = _store_output(status, key, store, settings)
        if task_cls is None and output.absent:  # no out.txt: a plain task's run, whose outputs its class alone knew
            return [Output("", note=UNKNOWN_CLASS)]
        return [output]
    params = status.params if status.params is not None else status.run.params if status.run else None
    if params is None:
        return []
    assert task_cls is not None
    found = _targets(task_cls, chain_module(key.chain_type, key.chain), key.path, tuple(sorted(params.items())))
    if isinstance(found, str):
        return [Output("", note=found)]
    if not status.done:
        return [Output(target, note=f"the task is {status.job_status}, not DONE") for _, target in found]
    return [_locate(kind, target, settings) for kind, target in found]


#: a run's DONE state, looked up once, not through its enum class at each DONE lookup
_DONE_RUN = RunState.DONE


#: a key's job status where its run ended DONE but an output of its task no longer exists (:func:`unmade`)
MISSING = "MISSING"


def unmade(status: JobStatus, outputs: Sequence[Output]) -> JobStatus:
    """``status``, or, where it is DONE by its run's row though an output of its task no longer exists (deleted
    since that run made it), :data:`MISSING`, saying so: luigi counts such a task not complete, and a new submission
    runs it again. A state of its own, not PENDING (which says a run is queued: a client polling until DONE or
    FAILED, and the UI, would wait for ever) nor DONE (whose output exists). Read from ``outputs``
    (:func:`status_outputs`), whose look at each file a DONE status makes anyway: no read more. A task without
    outputs stays DONE (luigi's ``complete()`` is false for it, and a run that ended without error is DONE: README,
    "luigi's semantics")."""
    run = status.run
    if run is None or run.state is not _DONE_RUN or status.job_status != DONE:
        return status
    for output in outputs:  # a loop, not a list made at every DONE lookup
        if output.absent:
            break
    else:
        return status
    gone = [output.target for output in outputs if output.absent]
    what = (
        f"its output {gone[0]} no longer exists" if len(gone) == 1 else f"its outputs {', '.join(gone)} no longer exist"
    )
    error = (
        f"not complete: {what} (run {run.id} made it, DONE), so luigi counts {status.key.task} not complete; no run is "
        "queued to make it again: submit it again"
    )
    return status._replace(job_status=MISSING, resource_url=None, expires_in=None, error=error)


def said_status(service: Nectar, key: TargetKey) -> tuple[JobStatus, list[Output], tuple[TaskInfo | None, TargetStore]]:
    """``key``'s status as the API and ``nectar status`` say it: the service's (:meth:`Nectar.status`), :func:`unmade`
    where an output of its DONE task is gone; with its task's outputs (:func:`status_outputs`) and its task and store
    (:meth:`Nectar.task_store`), each found once."""
    task_store = service.task_store(key)
    info, store = task_store
    status = service.status(key, store)
    outputs = status_outputs(status, info.cls if info is not None else None, store, service.settings)
    return unmade(status, outputs), outputs, task_store


def resource_note(status: JobStatus, outputs: Sequence[Output]) -> str | None:
    """Why a status has no ``resource_url``: its first output's reason, or that it has none."""
    if not outputs:
        if status.run is None and status.params is None:
            return f"{status.key.task} has no run here: its outputs are unknown"
        return f"{status.key.task} has no output"
    first = outputs[0]
    return None if first.url or first.key or first.path else first.note


def _store_output(status: JobStatus, key: TargetKey, store: TargetStore, settings: Settings) -> Output:
    target = store.describe(key)
    if status.expires_in is not None:  # job_status found it (and presigned it, in S3)
        return Output(target, url=status.resource_url, key=None if status.resource_url else key)
    if status.job_status != RunState.DONE:
        return Output(target, note=f"the task is {status.job_status}, not DONE")
    if not store.exists(key):
        return Output(target, note=f"{key.filename} does not exist in {store.location}", absent=True)
    url = store.url(key, settings.url_expiry)  # S3's presigned URL; None for the local store: the API signs the key
    return Output(target, url=url, key=None if url else key)


#: the kind of an output that is a folder of parts, luigi's ``S3FlagTarget``, before its flag's name
S3_FOLDER = "s3 folder, flag "


@functools.lru_cache(maxsize=CACHED_TASKS)
def _targets(
    task_cls: type[luigi.Task], module: str, key: str, params: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...] | str:
    """``(kind, path or URI)`` of each output of the task, or why they cannot be known (``key`` keys the cache): as a
    run of the chain module ``module`` names them, in its working directory (a relative ``LocalTarget`` is the folder's
    the chain file moves to at its top, as under ``python -m luigi``: :func:`run_outputs`)."""
    try:
        task = task_of_text(task_cls, dict(params))  # luigi's values, as the attempt's
        return tuple(_describe(target) for target in run_outputs(task, module))
    except Exception as exc:  # whatever output() raises is the task's: named in the status
        return f"output() raised {type(exc).__name__}: {exc}"


def _describe(target: Any) -> tuple[str, str]:
    if isinstance(target, luigi.LocalTarget):
        return "local", os.path.abspath(target.path)
    from luigi.contrib.s3 import S3FlagTarget, S3Target

    if isinstance(target, S3FlagTarget):  # a folder of parts, complete once its flag is there (Spark's, Hadoop's)
        return f"{S3_FOLDER}{target.flag}", str(target.path)
    if isinstance(target, S3Target):
        return "s3", str(target.path)
    return type(target).__name__, str(getattr(target, "path", target))


def _locate(kind: str, target: str, settings: Settings) -> Output:
    if kind == "local":
        return _local(target, settings)
    if kind == "s3":
        return _s3(target, settings)
    if kind.startswith(S3_FOLDER):
        return _s3(target, settings, flag=kind.removeprefix(S3_FOLDER))
    return Output(target, note=f"a {kind}: only LocalTarget and S3Target files are downloadable")


def _local(target: str, settings: Settings) -> Output:
    real = Path(os.path.realpath(target))
    if not any(real.is_relative_to(root) for root in settings.output_root_paths):
        outside = "not under a folder the service serves (local_targets, NECTAR_OUTPUT_ROOTS)"
        if not real.exists():  # luigi's complete() false, as a submission finds it: its run's output is missing
            return Output(target, note=f"does not exist ({outside})", absent=True)
        return Output(target, note=outside)
    if not real.is_file():
        return (
            Output(target, note="is a folder, not a file")
            if real.is_dir()
            else Output(target, note="does not exist", absent=True)
        )
    if is_hard_link(real.stat()):
        return Output(target, note="is a hard link (a file with other names), which the service does not serve")
    return Output(target, path=str(real))


def served_file(path: str, settings: Settings) -> Path:
    """The real file a signed ``path`` names: :class:`InvalidKey` if it is (or a link makes it) outside
    every allowed folder or is a hard link, :class:`NotFound` if it is no file now."""
    if not os.path.isabs(path):
        raise InvalidKey(f"path {path[:200]!r} is not absolute")
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(root) for root in settings.output_root_paths):
        raise InvalidKey(f"path {path[:200]!r} resolves outside the folders the service serves")
    if not real.is_file():
        raise NotFound(f"no file {path[:200]}")
    status = real.stat()
    if is_hard_link(status):
        raise hard_link_refused(f"path {path[:200]!r}", status, "the folders the service serves")
    return real


def _s3(target: str, settings: Settings, flag: str | None = None) -> Output:
    """An S3 object's output: its presigned URL, or why it has none. With ``flag``, ``target`` is a folder of parts
    (luigi's ``S3FlagTarget``): there, as luigi has it, once ``<folder><flag>`` is; not one file to download."""
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(target)
    bucket, name = parts.netloc, parts.path.lstrip("/")
    store = get_store(settings, "s3")
    assert isinstance(store, S3Store)
    try:
        store.boto.head_object(Bucket=bucket, Key=name + (flag or ""))
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in {"404", "NoSuchKey", "NotFound"}:
            return Output(target, note=f"bucket {bucket} is not reachable by the service: {code}")
        try:  # a HEAD answers 404 for a missing bucket as for a missing key
            store.boto.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError):
            return Output(target, note=f"bucket {bucket} is not reachable by the service")
        return Output(target, note=f"its flag {flag} does not exist" if flag else "does not exist", absent=True)
    except BotoCoreError as exc:
        return Output(target, note=f"bucket {bucket} is not reachable by the service: {exc}")
    if flag:
        return Output(target, note=f"a folder of parts, complete (its {flag} is there): not one file to download")
    url = store.boto.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": name}, ExpiresIn=settings.url_expiry
    )
    return Output(target, url=str(url))
