"""Absolute URLs the API hands out: catalog hrefs, status, logs and signed file downloads."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import url_for

from api.context import nectar, signer
from nectar.keys import OUTPUT_FILE, TargetKey
from nectar.logs import STREAMS
from nectar.status import JobStatus


def external(endpoint: str, query: dict[str, str] | None = None, **values: str) -> str:
    """``endpoint``'s absolute URL; a query keeps its '/' readable (``?chain=chains/...``)."""
    url = url_for(endpoint, _external=True, **values)
    return f"{url}?{urlencode(query, safe='/')}" if query else url


def type_href(chain_type: str) -> str:
    return external("chains.ChainType", chain_type=chain_type)


def chain_href(chain_type: str, chain: str) -> str:
    return external("chains.Chain", chain_type=chain_type, chain=chain)


def task_href(chain_type: str, chain: str, task: str) -> str:
    return external("chains.Task", chain_type=chain_type, chain=chain, task=task)


def status_url(key: TargetKey) -> str:
    return external("status.ChainStatus", {"chain": key.with_file(OUTPUT_FILE).path})


def log_urls(key: TargetKey) -> dict[str, str]:
    """The URL of each of the task's logs (``stdout``, ``stderr``), built from one ``url_for``."""
    url = external("logs.Log", {"chain": key.with_file(OUTPUT_FILE).path})
    return {stream: f"{url}&stream={stream}" for stream in STREAMS}  # stream names are plain words


def log_url(key: TargetKey, stream: str) -> str:
    return log_urls(key)[stream]


def resource_url(status: JobStatus) -> str | None:
    """Where to download a done target: the store's own URL (S3 presigned), else a signed API URL."""
    if not status.done:
        return None
    if status.resource_url:
        return status.resource_url
    return external("files.File", signer().sign(status.key.path, nectar().settings.url_expiry))
