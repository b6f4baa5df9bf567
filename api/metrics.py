"""``/metrics`` for Prometheus: the registry's runs, schedules and triggers (:mod:`nectar.metrics`), HTTP latencies.

Under gunicorn each worker process keeps its own latencies; with ``PROMETHEUS_MULTIPROC_DIR``
set (``nectar.gunicorn_conf`` sets it) they are written there and every scrape adds them up.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest, multiprocess

from api.context import facade
from nectar.metrics import RunsCollector, SchedulesCollector, TriggersCollector

#: the methods labelled by name (RFC 9110's); any other, and a path that matches no route, is labelled ``other``
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER = "other"
#: seconds an API request took, by route (its template), method and status: bounded label sets, whatever is sent
HTTP_LATENCY = Histogram(
    "nectar_http_request_duration_seconds",
    "Seconds the API took to answer a request, by endpoint.",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)


def _start() -> None:
    g.nectar_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("nectar_started", None)
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule is not None else OTHER
        method = request.method if request.method in KNOWN_METHODS else OTHER
        HTTP_LATENCY.labels(method, endpoint, str(response.status_code)).observe(time.perf_counter() - started)
    return response


def metrics() -> Response:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)  # collect once a scrape, not twice
    registry.register(RunsCollector(facade().runs))
    registry.register(SchedulesCollector(facade().runs))
    registry.register(TriggersCollector(facade().runs))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_LATENCY)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def install(app: Flask) -> None:
    """Time every request and serve ``/metrics`` (outside the OpenAPI document: it is not JSON)."""
    app.before_request(_start)
    app.after_request(_observe)
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
