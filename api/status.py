"""The status of a submitted task, by its target key."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api import links
from api.context import facade
from api.envelope import doc_only, dumped_answer, error_responses
from api.schemas import KeyQuerySchema, StatusEnvelope, StatusSchema
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


#: the fields of a status answer's ``data``, in the order it writes them (its keys sorted): the schema's, every one
STATUS_FIELDS = tuple(sorted(StatusSchema().fields))


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
    # every field in the order of their names, as the answer writes them (sort_keys): the encoder's sort of each dict
    # then finds one run already in order (tests/api/test_status_order.py), not a shuffle to merge; null unless set.
    # The log and download fields are named where they are made (links.log_links, links.downloads), not again here
    data = dict.fromkeys(STATUS_FIELDS)
    data.update(logs)
    data.update(links.downloads(status, service, task_store, signing))
    data["error"] = status.error
    data["failed_step"] = status.failed_step
    data["job_status"] = status.job_status
    data["key"] = status.key.path
    data["steps"] = [links.step_out(step, known) for step in status.steps]
    if run is not None:
        data["attempt"] = run.attempt
        data["fire_time"] = iso_utc(run.fire_time)
        data["max_attempts"] = run.max_attempts
        data["objects"] = None if run.objects is None else list(run.objects)
        data["retry_at"] = run.retry_at
        data["run_id"] = run.id
        data["run_url"] = links.run_url(run.id)
        data["schedule_id"] = run.schedule_id
        data["scheduler_url"] = service.visualiser_url(run.task_id)
        data["trigger_id"] = run.trigger_id
        data["wait_until"] = iso_utc(run.wait_until)
        data["waiting_for"] = None if run.waiting_for is None else list(run.waiting_for)
        data["waiting_since"] = run.waiting_since
    return data
