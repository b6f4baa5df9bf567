"""The marshmallow schemas of ``POST /api/batches``: the body it takes and the rows it answers."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from api.envelope import enveloped
from api.schemas import BatchRowSchema, BatchSchema
from nectar.config import INTEGER_MOST

#: the most ``offset`` and ``batch_size`` may be, as ``NECTAR_MAX_BATCH``: the objects listed end at ``offset`` +
#: rows x ``batch_size``, below ``sys.maxsize`` then (past it, the listing's ``islice`` raises ValueError, a 500)
COUNT_MOST = INTEGER_MOST


def _optional_count(minimum: int, description: str, most: int | None = None) -> fields.Integer:
    return fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=ma.validate.Range(min=minimum, max=most),
        metadata={"description": description},
    )


class PrefixBatchBodySchema(ma.Schema):
    """``POST /api/batches``: a run of a task for each object (or group of objects) under a prefix."""

    task = fields.String(required=True, metadata={"description": "The task run: <type>/<chain>/<Task>."})
    from_prefix = fields.String(
        required=True,
        metadata={
            "description": "s3://bucket/some/prefix/ or an absolute folder of the server: every object below it.",
            "example": "s3://landing-bucket/sales/",
        },
    )
    param = fields.String(required=True, metadata={"description": "The task's parameter that receives each object."})
    params = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "The task's other, fixed parameters."}
    )
    glob = fields.String(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "Only the paths below the prefix it matches: * and ? within a folder, ** across.",
            "example": "**/*.csv",
        },
    )
    offset = fields.Integer(
        strict=True,
        load_default=0,
        validate=ma.validate.Range(min=0, max=COUNT_MOST),
        metadata={"description": "Objects skipped."},
    )
    limit = _optional_count(0, "Objects taken at most (after glob and offset).")
    batch_size = _optional_count(
        1, "A run per group of up to this many objects; param is then a list parameter.", COUNT_MOST
    )
    relative = fields.Boolean(
        load_default=False,
        metadata={"description": "Give param each object's path below the prefix instead of its full URI or path."},
    )


class PrefixBatchRowSchema(BatchRowSchema):
    params = fields.Dict(
        keys=fields.String(), metadata={"description": "The row's parameters: the fixed ones and its object(s)."}
    )


class PrefixBatchSchema(BatchSchema):
    rows = fields.List(fields.Nested(PrefixBatchRowSchema))
    objects = fields.Integer(metadata={"description": "The objects listed, in the rows in key order."})
    from_prefix = fields.String(metadata={"description": "The prefix listed, as a folder."})


PrefixBatchEnvelope = enveloped("PrefixBatchEnvelope", fields.Nested(PrefixBatchSchema))
