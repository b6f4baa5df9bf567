"""The status of a submitted task, by its target key."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api import links
from api.context import facade
from api.envelope import doc_only, dumped_answer, error_responses
from api.schemas import KeyQuerySchema, StatusEnvelope
from nectar.keys import TargetKey
from nectar.registry import Run
from nectar.registry.model import iso_utc
from nectar.service import Nectar
from nectar.signing import UrlSigner
from nectar.status import log_source

blp = Blueprint("status", __name__, url_prefix="/api", description="Job status by target key.")
#: one instance for every request
KEY_QUERY = KeyQuerySchema()


#: what KEY_QUERY answers when ``chain`` is missing
MISSING_CHAIN = {"chain": [KEY_QUERY.fields["chain"].error_messages["required"]]}


def _chain_argument() -> str:
    """The ``chain`` query argument, as ``@blp.arguments(KEY_QUERY)`` loads it (a 422 naming it when missing).

    The status poll is the hottest path: a query value is always a string, so the one check
    KEY_QUERY makes is made here, without marshmallow's or webargs' layers around every call.
    """
    chain = request.args.get("chain")
    if chain is None:
        abort(422, errors=MISSING_CHAIN)
    return str(chain)


@blp.route("/chainstatus")
class ChainStatus(MethodView):
    @doc_only(blp.arguments(KEY_QUERY, location="query"), blp.response(200, StatusEnvelope))
    @error_responses(blp, 400, 404, 422, 503)
    def get(self):
        """The job status of a key, its steps, logs and (when DONE) a download URL"""
        return dumped_answer(status_data(facade(), TargetKey.parse(_chain_argument())))


#: a status's fields that come from its run, none without one (:func:`_run_fields`)
NO_RUN: tuple[None, ...] = (None,) * 13


def _run_fields(service: Nectar, run: Run) -> tuple[Any, ...]:
    """The fields of a status that its run gives, in the order :func:`status_data` places them: ``attempt``,
    ``fire_time``, ``max_attempts``, ``objects``, ``retry_at``, ``run_id``, ``run_url``, ``schedule_id``,
    ``scheduler_url``, ``trigger_id``, ``wait_until``, ``waiting_for``, ``waiting_since``."""
    return (
        run.attempt,
        iso_utc(run.fire_time),
        run.max_attempts,
        None if run.objects is None else list(run.objects),
        run.retry_at,
        run.id,
        links.run_url(run.id),
        run.schedule_id,
        service.visualiser_url(run.task_id),
        run.trigger_id,
        iso_utc(run.wait_until),
        None if run.waiting_for is None else list(run.waiting_for),
        run.waiting_since,
    )


def status_data(service: Nectar, key: TargetKey, signing: UrlSigner | None = None) -> dict[str, Any]:
    """The answer's ``data`` for ``key``, shaped as StatusEnvelope dumps it (tests/api/test_status.py holds it to
    that): sent without a dump, by the view and by :mod:`api.status_path` alike. Raises what the lookup raises.
    ``signing``: the app's signer (:func:`~api.context.signer`) when the caller has it at hand."""
    task_store = service.task_store(key)  # found once, for the status and its downloads
    status = service.status(key, task_store[1])
    run = status.run
    # the task's log URLs, built once for the top-level fields and found again for its step (built first)
    known: links.LogUrls = {}
    logs = links.log_links(log_source(status.key, status.job_status, run, status.steps), known)
    got = links.downloads(status, service, task_store, signing)
    steps = [links.step_out(step, known) for step in status.steps]
    (
        attempt,
        fire_time,
        max_attempts,
        objects,
        retry_at,
        run_id,
        run_url,
        schedule_id,
        scheduler_url,
        trigger_id,
        wait_until,
        waiting_for,
        waiting_since,
    ) = NO_RUN if run is None else _run_fields(service, run)
    # every field in the order of their names, as the answer writes them (sort_keys): the encoder's sort of each dict
    # then finds one run already in order (tests/api/test_status_order.py), not a shuffle to merge; the schema's fields,
    # every one (tests/api/test_status.py). One dict display:
    # dict.fromkeys of the 26 names then a store of each (and an update from the log and download fields) cost ~9k
    # instructions more a lookup (callgrind). The log and download fields are named where they are made
    # (links.log_links, links.downloads), and only read here
    return {
        "attempt": attempt,
        "error": status.error,
        "expires_in": got["expires_in"],
        "failed_step": status.failed_step,
        "fire_time": fire_time,
        "job_status": status.job_status,
        "key": status.key.path,
        "logs_note": logs["logs_note"],
        "logs_task": logs["logs_task"],
        "max_attempts": max_attempts,
        "objects": objects,
        "outputs": got["outputs"],
        "resource_note": got["resource_note"],
        "resource_url": got["resource_url"],
        "retry_at": retry_at,
        "run_id": run_id,
        "run_url": run_url,
        "schedule_id": schedule_id,
        "scheduler_url": scheduler_url,
        "stderr_url": logs["stderr_url"],
        "stdout_url": logs["stdout_url"],
        "steps": steps,
        "trigger_id": trigger_id,
        "wait_until": wait_until,
        "waiting_for": waiting_for,
        "waiting_since": waiting_since,
    }
