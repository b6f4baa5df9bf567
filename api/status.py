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
    files = links.downloads(status, service, task_store, signing)
    # put in the order of their names, as the answer writes them (sort_keys): the encoder's sort of each dict then
    # finds one run already in order (tests/api/test_status_order.py), not a shuffle to merge
    return {
        "attempt": run.attempt if run else None,
        "error": status.error,
        "expires_in": files["expires_in"],
        "failed_step": status.failed_step,
        "fire_time": iso_utc(run.fire_time) if run else None,
        "job_status": status.job_status,
        "key": status.key.path,
        "logs_note": logs["logs_note"],
        "logs_task": logs["logs_task"],
        "max_attempts": run.max_attempts if run else None,
        "objects": list(run.objects) if run and run.objects is not None else None,
        "outputs": files["outputs"],
        "resource_note": files["resource_note"],
        "resource_url": files["resource_url"],
        "retry_at": run.retry_at if run else None,
        "run_id": run.id if run else None,
        "run_url": links.run_url(run.id) if run else None,
        "schedule_id": run.schedule_id if run else None,
        "scheduler_url": service.visualiser_url(run.task_id) if run else None,
        "stderr_url": logs["stderr_url"],
        "stdout_url": logs["stdout_url"],
        "steps": [links.step_out(step, known) for step in status.steps],
        "trigger_id": run.trigger_id if run else None,
        "wait_until": iso_utc(run.wait_until) if run else None,
        "waiting_for": list(run.waiting_for) if run and run.waiting_for is not None else None,
        "waiting_since": run.waiting_since if run else None,
    }
