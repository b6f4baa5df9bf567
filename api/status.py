"""The status of a submitted task, by its target key."""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api import links
from api.context import facade
from api.envelope import compact_encoder, compact_envelope, doc_only, dumped_answer, error_responses
from api.schemas import KeyQuerySchema, StatusEnvelope
from nectar.keys import TargetKey
from nectar.outputs import said_status
from nectar.registry import Run
from nectar.registry.model import iso_utc
from nectar.registry.schema import RunStatus
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


def _run_fields(service: Nectar, run: Run | RunStatus) -> tuple[Any, ...]:
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
    # its task and store found once, for the status and its downloads; its outputs, each looked at where DONE: one
    # that no longer exists makes it MISSING (no read more)
    status, outputs, task_store = said_status(service, key)
    run = status.run
    # the task's log URLs, built once for the top-level fields and found again for its step (built first)
    known: links.LogUrls = {}
    logs = links.log_links(log_source(status.key, status.job_status, run, status.steps), known)
    got = links.downloads(status, service, task_store, signing, outputs)
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


#: how many fields a status answer's data, each of its steps and each of its outputs have (:func:`status_body`)
DATA_FIELDS, STEP_FIELDS, OUTPUT_FIELDS = 26, 8, 3


def status_body(
    provider: DefaultJSONProvider, data: dict[str, Any], status: int, message: str, in_order: bool = True
) -> str:
    """:func:`~api.envelope.compact_envelope` of a status answer's ``data`` (:func:`status_data`'s), byte for byte,
    written field by field: its fields' names written in place, each text escaped by one call, the answer's download
    URL and log URLs (each there twice: on top, and in its output and its step) escaped once (an answer's JSON ~118k
    -> ~64k instructions, callgrind). A field of another kind than the one it has in :func:`status_data` (a number,
    text or None), or a field more or less, is left to ``compact_envelope``, which writes any data."""
    try:
        text = _status_text(data, status, message, compact_encoder(provider.default, False, False).encode)
    except (KeyError, TypeError):  # a field missing or one more (KeyError), a value not of its field's kind
        return compact_envelope(provider, data, status, message, in_order)
    if provider.ensure_ascii and not (text.isascii() and "\x7f" not in text):  # as compact_envelope writes it
        return compact_envelope(provider, data, status, message, in_order)
    return f"{text}\n"


def _status_text(data: dict[str, Any], status: int, message: str, other: Any) -> str:
    """:func:`status_body`'s JSON, ``other`` writing the values that are neither text nor None (a list, a float), and
    the numbers that are not ``int`` itself (a bool). Raises KeyError or TypeError for data of another shape."""
    text = encode_basestring  # TypeError for anything but text
    if len(data) != DATA_FIELDS:
        raise KeyError("a status answer's fields")
    url, stdout, stderr = data["resource_url"], data["stdout_url"], data["stderr_url"]
    url_text = "null" if url is None else text(url)
    stdout_text = "null" if stdout is None else text(stdout)
    stderr_text = "null" if stderr is None else text(stderr)
    parts = []
    for output in data["outputs"]:
        if len(output) != OUTPUT_FIELDS:
            raise KeyError("an output's fields")
        note, target, output_url = output["note"], output["target"], output["url"]
        parts.append(
            f'{{"note":{"null" if note is None else text(note)},"target":{"null" if target is None else text(target)},'
            f'"url":{url_text if output_url is url else "null" if output_url is None else text(output_url)}}}'
        )
    outputs = ",".join(parts)
    parts = []
    for step in data["steps"]:
        if len(step) != STEP_FIELDS:
            raise KeyError("a step's fields")
        error, executed, note = step["error"], step["executed"], step["log_note"]
        step_out, step_err = step["stdout_url"], step["stderr_url"]
        parts.append(
            f'{{"error":{"null" if error is None else text(error)},'
            f'"executed":{"true" if executed is True else "false" if executed is False else other(executed)},'
            f'"key":{text(step["key"])},"log_note":{"null" if note is None else text(note)},'
            f'"state":{text(step["state"])},'
            f'"stderr_url":{stderr_text if step_err is stderr else "null" if step_err is None else text(step_err)},'
            f'"stdout_url":{stdout_text if step_out is stdout else "null" if step_out is None else text(step_out)},'
            f'"task":{text(step["task"])}}}'
        )
    steps = ",".join(parts)
    attempt, error, expires_in, failed_step = data["attempt"], data["error"], data["expires_in"], data["failed_step"]
    fire_time, logs_note, logs_task, max_attempts = (
        data["fire_time"],
        data["logs_note"],
        data["logs_task"],
        data["max_attempts"],
    )
    objects, resource_note, retry_at, run_id = data["objects"], data["resource_note"], data["retry_at"], data["run_id"]
    run_url, schedule_id, scheduler_url = data["run_url"], data["schedule_id"], data["scheduler_url"]
    trigger_id, wait_until, waiting_for = data["trigger_id"], data["wait_until"], data["waiting_for"]
    waiting_since = data["waiting_since"]
    return (
        f'{{"data":{{"attempt":{int.__repr__(attempt) if type(attempt) is int else other(attempt)},'
        f'"error":{"null" if error is None else text(error)},'
        f'"expires_in":{int.__repr__(expires_in) if type(expires_in) is int else other(expires_in)},'
        f'"failed_step":{"null" if failed_step is None else text(failed_step)},'
        f'"fire_time":{"null" if fire_time is None else text(fire_time)},"job_status":{text(data["job_status"])},'
        f'"key":{text(data["key"])},"logs_note":{"null" if logs_note is None else text(logs_note)},'
        f'"logs_task":{"null" if logs_task is None else text(logs_task)},'
        f'"max_attempts":{int.__repr__(max_attempts) if type(max_attempts) is int else other(max_attempts)},'
        f'"objects":{"null" if objects is None else other(objects)},"outputs":[{outputs}],'
        f'"resource_note":{"null" if resource_note is None else text(resource_note)},"resource_url":{url_text},'
        f'"retry_at":{"null" if retry_at is None else other(retry_at)},'
        f'"run_id":{"null" if run_id is None else text(run_id)},'
        f'"run_url":{"null" if run_url is None else text(run_url)},'
        f'"schedule_id":{"null" if schedule_id is None else text(schedule_id)},'
        f'"scheduler_url":{"null" if scheduler_url is None else text(scheduler_url)},'
        f'"stderr_url":{stderr_text},"stdout_url":{stdout_text},"steps":[{steps}],'
        f'"trigger_id":{"null" if trigger_id is None else text(trigger_id)},'
        f'"wait_until":{"null" if wait_until is None else text(wait_until)},'
        f'"waiting_for":{"null" if waiting_for is None else other(waiting_for)},'
        f'"waiting_since":{"null" if waiting_since is None else other(waiting_since)}}},'
        f'"message":{text(message)},"status":{int.__repr__(status) if type(status) is int else other(status)}}}'
    )
