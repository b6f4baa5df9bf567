"""Data triggers: list, make, change, pause and remove them, and follow the objects each one claimed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api import links
from api.context import facade
from api.envelope import answer, doc_only, error_responses
from api.schemas import PagesQuerySchema
from api.submission import json_object
from api.trigger_schemas import (
    ObjectsQuerySchema,
    TriggerBodySchema,
    TriggerChangeSchema,
    TriggerEnvelope,
    TriggerObjectsEnvelope,
    TriggersEnvelope,
)
from nectar.registry import Run
from nectar.stores.listing import Location
from nectar.triggers.book import TriggerView
from nectar.triggers.model import OBJECT_STATES, TriggerObject

blp = Blueprint(
    "triggers",
    __name__,
    url_prefix="/api/triggers",
    description="Data triggers: a run of a task for each object landing under an S3 prefix or in a local folder.",
)


def trigger_out(view: TriggerView) -> dict[str, Any]:
    return {**view.to_dict(), "objects_url": links.external("triggers.Objects", trigger_id=view.id)}


def object_out(found: TriggerObject, run: Run | None, location: Location) -> dict[str, Any]:
    return {
        "key": found.object_key,
        "uri": location.uri(found.object_key),
        "version": found.version,
        "state": found.state,
        "reason": found.reason,
        "run_id": found.run_id,
        "job_status": run.state.value if run else None,
        "run_url": links.run_url(run.id) if run else None,
        "modified": found.modified,
        "recorded_at": found.recorded_at,
        "lag": found.lag,
    }


def objects_out(
    trigger_id: str, found: Sequence[tuple[TriggerObject, Run | None]], location: Location
) -> dict[str, Any]:
    states = Counter(obj.state for obj, _ in found)
    return {
        "trigger_id": trigger_id,
        "counts": {state: states[state] for state in OBJECT_STATES},
        "objects": [object_out(obj, run, location) for obj, run in found],
    }


@blp.route("")
class Triggers(MethodView):
    @blp.arguments(PagesQuerySchema, location="query")
    @blp.response(200, TriggersEnvelope)
    @blp.paginate(page_size=100, max_page_size=1000)
    @error_responses(blp, 422)
    def get(self, _query, pagination_parameters):
        """Every trigger, from the chain files first, then those made here: cursor, last object, runs made, paused

        The ``X-Pagination`` header says how many there are, and the pages. ``error`` is what the trigger's
        last listing failed with (its bucket gone, its folder unreadable), null when it listed.
        """
        views = facade().triggers.views()
        page = pagination_parameters
        page.item_count = len(views)
        return answer([trigger_out(view) for view in views[page.first_item : page.last_item + 1]])

    @doc_only(blp.arguments(TriggerBodySchema))
    @blp.response(201, TriggerEnvelope, description="Made: it claims what lands from now on (or all), unless paused.")
    @error_responses(blp, 413, 422)
    def post(self):
        """Make a trigger: a task run for each object (or group of objects) landing under a prefix

        Every bad field is named in a 422 (a prefix that is no s3:// URI or absolute folder, a bucket that does not
        exist or cannot be read, with the store's error, a missing folder, a glob that does not parse, an unknown
        task, a ``param`` the task does not have, a bad fixed parameter ``params.<name>``, a ``batch_size`` without
        a list parameter, an unknown field) and nothing is stored. Keys must land in S3 key order after what came
        before (timestamped names): the cursor is the last key dealt with.
        """
        return answer(trigger_out(facade().triggers.create(json_object("the trigger's fields"))), 201, "created")


@blp.route("/<trigger_id>")
class TriggerById(MethodView):
    @blp.response(200, TriggerEnvelope)
    @error_responses(blp, 404)
    def get(self, trigger_id):
        """One trigger: its definition, cursor, last object, counts and last listing's error"""
        return answer(trigger_out(facade().triggers.view(trigger_id)))

    @doc_only(blp.arguments(TriggerChangeSchema))
    @blp.response(200, TriggerEnvelope)
    @error_responses(blp, 404, 409, 413, 422)
    def patch(self, trigger_id):
        """Pause or resume a trigger (``{"paused": true}``), or change a field of one made here

        A trigger declared in a chain file is changed in its file: a PATCH of anything but ``paused`` answers
        409. The prefix of none can change (422: make a new trigger). Resumed, a trigger takes what landed
        meanwhile, from its cursor on.
        """
        return answer(trigger_out(facade().triggers.change(trigger_id, json_object("the trigger's fields"))))

    @blp.response(200, TriggerEnvelope, description="Removed: it claims no more; its objects' runs stay.")
    @error_responses(blp, 404, 409)
    def delete(self, trigger_id):
        """Remove a trigger made here (one from a chain file is removed from its file: 409)"""
        book = facade().triggers
        view = book.view(trigger_id)
        book.delete(trigger_id)
        return answer(trigger_out(view), 200, "deleted")


@blp.route("/<trigger_id>/objects")
class Objects(MethodView):
    @blp.arguments(ObjectsQuerySchema, location="query")
    @blp.response(200, TriggerObjectsEnvelope)
    @error_responses(blp, 404, 422)
    def get(self, query, trigger_id):
        """A trigger's claimed objects, newest first, each with its run's job status, and how many are in each state"""
        book = facade().triggers
        location = book.view(trigger_id).spec.location
        return answer(objects_out(trigger_id, book.objects(trigger_id, query["limit"]), location))
