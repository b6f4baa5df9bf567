"""Absolute URLs the API hands out: catalog hrefs, status, logs and signed file downloads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from flask import request, url_for

from api.context import facade, signer
from nectar.catalog.model import TaskInfo
from nectar.keys import OUTPUT_FILE, TargetKey
from nectar.logs.files import STREAMS
from nectar.outputs import SIGNED_PATH_PREFIX, Output, resource_note, status_outputs
from nectar.registry import Step
from nectar.registry.schema import StepStatus
from nectar.service import Nectar
from nectar.signing import UrlSigner
from nectar.status import JobStatus, LogSource, checked_source, has_log, step_log_note
from nectar.stores import TargetStore

#: absolute URLs of the endpoints that take no path value, by (endpoint, the public URL or the request's scheme,
#: its host and root)
_BASES: dict[tuple[str, str, str, str], str] = {}
#: how many of those are kept (a bound on the cache, whatever Hosts and roots the allow-list lets in)
MAX_BASES = 64


class Answering(NamedTuple):
    """A request answered without Flask's request context (:mod:`api.fast_path`), while it is: where its URLs start
    (the public URL or its scheme, its host and its root: :func:`_base`) and the app's service (its ``facade()``,
    which a route answered without the app's context too finds here)."""

    base: tuple[str, str, str]
    service: Nectar


_ANSWERED: ContextVar[Answering | None] = ContextVar("nectar_answered", default=None)


class NotBuilt(LookupError):
    """A URL that only ``url_for`` can build, asked for outside Flask's request context: Flask answers the request."""


def answering(environ: Mapping[str, Any], public: str | None, service: Nectar) -> Token[Answering | None]:
    """Links are built for the request of ``environ`` from now until :func:`answered` is given what this returns,
    without Flask's request context, ``public`` the public URL configured (``NECTAR_PUBLIC_URL``): from the URLs a
    request with Flask's has built already (one per endpoint, Host and root), else :class:`NotBuilt` is raised; the
    logs they link are looked up in ``service`` (the app's), without the app's context. (A pair of calls, not a
    context manager: its generator's frame cost about as much as the rest.)"""
    return _ANSWERED.set(Answering(_base(environ, public), service))


def answered(token: Token[Answering | None]) -> None:
    """The end of :func:`answering` (``token``: what it returned)."""
    _ANSWERED.reset(token)


def _base(environ: Mapping[str, Any], public: str | None) -> tuple[str, str, str]:
    """What url_for's absolute URLs start with in the request of ``environ``, read raw (request.host_url is slow):
    the public URL or the request's scheme, its Host (none after a public URL) and its root."""
    return (
        public or environ["wsgi.url_scheme"],
        "" if public else environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}",
        environ.get("SCRIPT_NAME", ""),
    )


def external(endpoint: str, query: dict[str, str] | None = None, **values: str) -> str:
    """``endpoint``'s absolute URL; a query keeps its '/' readable (``?chain=chains/...``).

    It starts with ``NECTAR_PUBLIC_URL`` when one is configured, else with the scheme and Host the request came by
    (a Host :mod:`api.hosts` allowed)."""
    answered = _ANSWERED.get()
    if answered is not None and not values:  # a status poll builds three of these, each its base found again
        url = _BASES.get((endpoint, *answered.base))
        if url is None:
            raise NotBuilt(f"{endpoint}'s URL for {answered.base} is built by url_for, in Flask's request context")
    elif values:
        url = _built(endpoint, facade().settings.public_url, **values)
    else:  # url_for's rule matching is most of its cost: its URL is built once per base
        public = facade().settings.public_url
        where = (endpoint, *_base(request.environ, public))
        url = _BASES.get(where) or ""
        if not url:
            if len(_BASES) >= MAX_BASES:
                _BASES.clear()
            url = _BASES[where] = _built(endpoint, public)
    return f"{url}?{urlencode(query, safe='/')}" if query else url


def _built(endpoint: str, public: str | None, **values: Any) -> str:
    """url_for's absolute URL, or its path (past the request's root) after the public URL."""
    if public is None:
        return url_for(endpoint, _external=True, **values)
    return public + url_for(endpoint, **values)[len(request.script_root) :]


def key_query(endpoint: str, key: TargetKey) -> str:
    """``endpoint``'s absolute URL asking about the task folder of ``key`` (``?chain=<its out.txt>``).

    A key is letters, digits and ``_./-`` (:class:`TargetKey` admits nothing else): it goes in a query as it is,
    as ``quote(path, safe='/')`` would leave it."""
    return f"{external(endpoint)}?chain={key.with_file(OUTPUT_FILE).path}"


def type_href(chain_type: str) -> str:
    return external("chains.ChainType", chain_type=chain_type)


def chain_href(chain_type: str, chain: str) -> str:
    return external("chains.Chain", chain_type=chain_type, chain=chain)


def task_href(chain_type: str, chain: str, task: str) -> str:
    return external("chains.Task", chain_type=chain_type, chain=chain, task=task)


def run_url(run_id: str) -> str:
    """``GET /api/runs/<run_id>``: the runs list's URL and the id, without url_for's rule build (a run id is hex:
    letters and digits go in a path as they are, anything else would be quoted)."""
    plain = run_id.isascii() and run_id.isalnum()
    return f"{external('runs.Runs')}/{run_id if plain else quote(run_id, safe='')}"


def status_url(key: TargetKey) -> str:
    return key_query("status.ChainStatus", key)


def log_urls(key: TargetKey) -> dict[str, str]:
    """The URL of each of the task's logs (``stdout``, ``stderr``), built from one ``url_for``."""
    url = key_query("logs.Log", key)
    return {stream: f"{url}&stream={stream}" for stream in STREAMS}  # stream names are plain words


#: the log URLs of the keys a status has linked so far (its own task's key, most often twice: as a step and on top)
LogUrls = dict[str, dict[str, str]]


def known_log_urls(key: TargetKey | str, known: LogUrls | None) -> dict[str, str]:
    """:func:`log_urls` of ``key`` (or of the key at that path), built (a path parsed) once per key in ``known``."""
    path = key if isinstance(key, str) else key.path
    found = known.get(path) if known is not None else None
    if found is None:
        found = log_urls(TargetKey.parse(key) if isinstance(key, str) else key)
        if known is not None:
            known[path] = found
    return found


def logged(key: TargetKey) -> bool:
    """Whether the task of ``key`` has a log the log endpoint serves (live, or in its store): in the service of the
    request answered (:func:`answering`), else the app's."""
    answering = _ANSWERED.get()
    service = answering.service if answering is not None else facade()
    return has_log(key, service.store_of(key))


def step_out(step: Step | StepStatus, known: LogUrls | None = None) -> dict:
    """A step as a status lists it: its state and, when its logs can be served, their URLs (else why not)."""
    note = step_log_note(step, logged)
    logs = known_log_urls(step.key, known) if step.key and note is None else {}
    return {  # in the order of their names, as the answer writes them (see api.status.status_data)
        "error": step.error,
        "executed": step.executed,
        "key": step.key,
        "log_note": note,
        "state": step.state,
        "stderr_url": logs.get("stderr"),
        "stdout_url": logs.get("stdout"),
        "task": step.task,
    }


def log_links(source: LogSource, known: LogUrls | None = None) -> dict:
    """A status's top-level log fields: the URLs of ``source``'s logs, whose they are, and why when not the task's
    (or why there are none: a task that did not run here and left no log)."""
    source = checked_source(source, logged)
    logs = known_log_urls(source.key, known) if source.key else {}
    return {
        "stdout_url": logs.get("stdout"),
        "stderr_url": logs.get("stderr"),
        "logs_task": source.task,
        "logs_note": source.note,
    }


def output_url(output: Output, expiry: int, signing: UrlSigner) -> str | None:
    """Where to download an output: S3's presigned URL, else a signed API URL (living ``expiry`` seconds, signed by
    ``signing``) of its store key or its path."""
    if output.url:
        return output.url
    if output.key is not None:  # a key goes in a query as it is (see key_query); expiry and signature: digits, hex
        key, expires, signature = signing.sign(output.key.path, expiry).values()
        return f"{external('files.File')}?key={key}&expires={expires}&signature={signature}"
    if output.path is not None:
        signed = signing.sign(SIGNED_PATH_PREFIX + output.path, expiry)
        signed["path"] = signed.pop("key")[len(SIGNED_PATH_PREFIX) :]
        return external("files.File", signed)
    return None


def downloads(
    status: JobStatus,
    service: Nectar | None = None,
    task_store: tuple[TaskInfo | None, TargetStore] | None = None,
    signing: UrlSigner | None = None,
    outputs: Sequence[Output] | None = None,
) -> dict:
    """A status's download fields: every output of its task (``outputs``), the first one's URL
    (``resource_url``, handed out only for a file that exists) or why there is none (``resource_note``).
    ``service``: the app's (:func:`~api.context.facade`), ``task_store``: its ``task_store(status.key)``, and
    ``signing``: its signer (:func:`~api.context.signer`), when the caller has them at hand; ``outputs``: the
    task's (:func:`~nectar.outputs.status_outputs`), when the caller found them already."""
    service = service or facade()
    info, store = task_store or service.task_store(status.key)
    if outputs is None:
        outputs = status_outputs(status, info.cls if info else None, store, service.settings)
    expiry, signing = service.settings.url_expiry, signing or signer()
    listed = [
        {"note": output.note, "target": output.target, "url": output_url(output, expiry, signing)} for output in outputs
    ]
    url = listed[0]["url"] if listed else None
    return {
        "resource_url": url,
        "resource_note": None if url else resource_note(status, outputs),
        "expires_in": status.expires_in or (service.settings.url_expiry if url else None),
        "outputs": listed,
    }
