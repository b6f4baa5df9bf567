"""``/metrics`` for Prometheus: the registry's runs, schedules and triggers (:mod:`nectar.metrics`), HTTP latencies.

Under gunicorn each worker process keeps its own latencies; with ``PROMETHEUS_MULTIPROC_DIR``
set (``nectar.gunicorn_conf`` sets it) they are written there and every scrape adds them up.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest, multiprocess, values

from api.context import facade
from nectar.forks import pid
from nectar.metrics import RunsCollector, SchedulesCollector, TriggersCollector

if TYPE_CHECKING:
    from api.guards import Asked

logger = logging.getLogger(__name__)

#: the methods labelled by name (RFC 9110's); any other, and a path that matches no route, is labelled ``other``
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER = "other"


def _values_keyed_by_forks_pid() -> None:
    """prometheus_client's multiprocess values (its choice as it is imported: ``PROMETHEUS_MULTIPROC_DIR`` set) name
    their file by the process, and look whether the process changed (a fork: files of its own) at every ``inc`` and
    ``observe``, with ``os.getpid``: a system call each, 2 a request (a histogram's sum and bucket). They are given
    :func:`nectar.forks.pid` instead, which says the same without one (noted again in every forked child, as
    gunicorn's workers are); the library takes the identifier as ``MultiProcessValue``'s ``process_identifier``.
    Each value is made of the class ``values.ValueClass`` holds then: before any metric of this module is made."""
    if getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue(process_identifier=pid)


_values_keyed_by_forks_pid()
#: seconds an API request took, by route (its template), method and status: bounded label sets, whatever is sent
HTTP_LATENCY = Histogram(
    "nectar_http_request_duration_seconds",
    "Seconds the API took to answer a request, by endpoint.",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)


#: where a request's start is kept, in its WSGI environ
STARTED = "nectar.started"


def start(request: Asked) -> None:
    """The clock of ``request``'s latency starts (the first thing :mod:`api.guards` does)."""
    request.environ[STARTED] = time.perf_counter()


def observe(request: Request, response: Response) -> Response:
    """The latency of ``request``, if it was started, recorded by its route, method and ``response``'s status."""
    record(request, response.status_code)
    return response


#: HTTP_LATENCY's child of each (method, endpoint, status) seen, kept: ``labels()`` checks and joins its values and
#: takes the metric's lock on every call (the labels are bounded, see HTTP_LATENCY: so is this)
_TIMERS: dict[tuple[str, str, int], Histogram] = {}


def record(request: Asked, status: int) -> None:
    """The latency of ``request``, if it was started, recorded by its route, method and the ``status`` answered."""
    started = request.environ.pop(STARTED, None)
    if started is not None:
        rule, method = request.url_rule, request.method
        labels = (method if method in KNOWN_METHODS else OTHER, rule.rule if rule is not None else OTHER, status)
        timer = _TIMERS.get(labels)
        if timer is None:
            timer = _TIMERS[labels] = HTTP_LATENCY.labels(labels[0], labels[1], str(status))
        timer.observe(time.perf_counter() - started)


#: the bytes of a prometheus file's header: how much of it is used, as prometheus_client packs it (``i``)
HEADER = 4


def begun(path: str) -> bool:
    """Whether the prometheus file at ``path`` has its header: a worker killed as it made it (made, not yet sized)
    leaves it empty for good, and prometheus_client's reader raised on it (``struct.error``) at every scrape."""
    try:
        return os.stat(path).st_size >= HEADER
    except FileNotFoundError:  # removed since it was listed: read as prometheus_client reads it (its own rule)
        return True


#: the empty files a scrape of this process passed over
_SKIPPED: set[str] = set()
#: what is added to an empty file's name for the mark that it was said (not a ``.db``: no reader takes it)
SAID = ".said"


def first_to_say(path: str) -> bool:
    """Whether this process is the first of its service to pass over the empty prometheus file at ``path``: each API
    worker (each process reading the folder) passed over it on its own, and each said it. The first makes a mark
    beside it in the service's metrics folder (``O_EXCL``: one process makes it); a folder it cannot write in, each
    process says it once, as before."""
    if path in _SKIPPED:
        return False
    _SKIPPED.add(path)
    try:
        os.close(os.open(path + SAID, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


class WorkersCollector(multiprocess.MultiProcessCollector):
    """The latencies every worker wrote in its files, those without a header passed over (:func:`begun`), each said
    once at WARNING by the service (:func:`first_to_say`): a scrape does not fail for a worker that was killed as it
    made its file."""

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__(registry, path)
        self.folder = path  # the library's own is private

    def collect(self) -> Iterable:
        files = []
        for path in glob.glob(os.path.join(self.folder, "*.db")):
            if begun(path):
                files.append(path)
            elif first_to_say(path):
                logger.warning(
                    "metrics: %s is empty (a worker that was killed as it made it, or one making it now): its "
                    "latencies are not counted while it is",
                    path,
                )
        return self.merge(files, accumulate=True)


def metrics() -> Response:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)  # collect once a scrape, not twice
    registry.register(RunsCollector(facade().runs))
    registry.register(SchedulesCollector(facade().runs))
    registry.register(TriggersCollector(facade().runs))
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        WorkersCollector(registry, folder)
    else:
        registry.register(HTTP_LATENCY)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def install(app: Flask) -> None:
    """Serve ``/metrics`` (outside the OpenAPI document: it is not JSON); :mod:`api.guards` times every request."""
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
