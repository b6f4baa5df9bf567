"""Batches from a prefix: a run of a task for each object (or group of objects) under an S3 prefix or a folder."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.batch import submit_rows
from api.batches_schemas import PrefixBatchBodySchema, PrefixBatchEnvelope
from api.context import facade
from api.envelope import answer, error_responses
from api.schemas import BatchQuerySchema
from nectar.batches import PrefixBatch
from nectar.catalog.model import TaskInfo
from nectar.errors import InvalidParameters, NotFound
from nectar.keys import is_name
from nectar.stores.listing import Location

blp = Blueprint(
    "batches", __name__, url_prefix="/api/batches", description="Batches of runs, one per object under a prefix."
)


def named_task(ref: str) -> TaskInfo:
    """The task ``<type>/<chain>/<Task>`` of a body's ``task`` field; else a 422 naming it."""
    parts = ref.split("/")
    if len(parts) != 3 or not all(is_name(part) for part in parts):
        raise InvalidParameters({"task": [f"{ref!r} is not <type>/<chain>/<Task>"]})
    try:
        return facade().task(*parts)
    except NotFound as exc:
        raise InvalidParameters({"task": [str(exc)]}) from None


@blp.route("")
class PrefixBatches(MethodView):
    @blp.arguments(BatchQuerySchema, location="query")
    @blp.arguments(PrefixBatchBodySchema)
    @blp.response(200, PrefixBatchEnvelope, description="Every object's (or group's) row answered on its own.")
    @error_responses(blp, 413, 422, 503)
    def post(self, query, body):
        """Run a task for each object under an S3 prefix or a folder of the server

        The objects below ``from_prefix`` that ``glob`` matches (hidden names, a part starting with ``.`` or ``_``,
        are skipped) are listed in key order; after ``offset``, at most ``limit`` of them each make a row, the
        parameter ``param`` given the object's full URI (``s3://bucket/key``) or absolute path (its path below the
        prefix with ``relative``), beside the fixed ``params``. With ``batch_size``, a row per group of up to that
        many objects, ``param`` then a list parameter. The rows are submitted as a batch of
        ``/api/chains/<type>/<chain>/<Task>/batch`` is: each answered on its own, ``atomic=true`` all or nothing,
        the same objects sent again queue nothing new. Each bad field is named in a 422: an unknown task, a
        ``param`` the task has not, a bucket or folder that cannot be listed (with the store's error) or a folder
        outside the landing roots (``<data_dir>/landing`` and ``NECTAR_LANDING_ROOTS``), a glob that
        does not parse, no object at all; more rows than ``NECTAR_MAX_BATCH`` is a 413.
        """
        info = named_task(body.pop("task"))
        batch = PrefixBatch(**body)
        service = facade()
        Location.parse(batch.from_prefix, "from_prefix").check_allowed(service.settings.landing_root_paths)
        rows, objects = batch.rows(info, service.settings.max_batch)
        data, headers = submit_rows(info, rows, query["atomic"])
        for result, row in zip(data["rows"], rows, strict=True):
            result["params"] = row
        data.update(objects=objects, from_prefix=str(Location.parse(batch.from_prefix)))
        return (*answer(data), headers)
