"""The marshmallow schemas of data triggers: the bodies ``/api/triggers`` takes (documented) and what it answers."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from api.envelope import enveloped
from api.schedule_schemas import PreloadSchema
from api.schemas import KnownQuerySchema
from nectar.schedules.model import SOURCES
from nectar.triggers.model import EXISTING, OBJECT_STATES


class TriggerChangeSchema(ma.Schema):
    """A trigger's fields as ``PATCH`` takes them: any of them but ``prefix`` (a file trigger's: ``paused`` only).

    Documentation only: :meth:`nectar.triggers.book.TriggerBook.create` and ``change`` read the body, so a
    file's trigger and the API's are checked by the same code, naming each bad field.
    """

    task = fields.String(metadata={"description": "The task run for each object: <type>/<chain>/<Task>."})
    glob = fields.String(
        allow_none=True,
        metadata={
            "description": "Only the objects whose name past the prefix matches, e.g. *.csv.",
            "example": "*.csv",
        },
    )
    param = fields.String(
        metadata={"description": "The parameter that receives each object's full URI (s3://bucket/key) or path."}
    )
    params = fields.Dict(
        keys=fields.String(), metadata={"description": "The task's fixed parameters, as a submission takes them."}
    )
    existing = fields.String(
        validate=ma.validate.OneOf(EXISTING),
        metadata={"description": "new (default): only objects landing after it is made; all: those there too."},
    )
    batch_size = fields.Integer(
        allow_none=True,
        metadata={"description": "One run per group of up to this many objects (param then a list parameter)."},
    )
    poll_s = fields.Float(metadata={"description": "Seconds between two listings of the prefix (default 10)."})
    preload = fields.Nested(
        PreloadSchema,
        allow_none=True,
        metadata={"description": "A pre-load strategy, as a schedule's (its fire time: when it claims the object)."},
    )
    paused = fields.Boolean(metadata={"description": "A paused trigger claims nothing; resumed, it takes what landed."})


class TriggerBodySchema(TriggerChangeSchema):
    """A new trigger, as ``POST /api/triggers`` takes it."""

    task = fields.String(required=True, metadata={"description": "The task run for each object: <type>/<chain>/<Task>"})
    prefix = fields.String(
        required=True,
        metadata={
            "description": "An s3://bucket/prefix/ URI or an absolute local folder (it must exist and be readable).",
            "example": "s3://landing/sales/",
        },
    )
    param = fields.String(
        required=True,
        metadata={"description": "The parameter that receives each object's full URI (s3://bucket/key) or path."},
    )


class TriggerSchema(TriggerChangeSchema):
    """A trigger as every listing shows it, from a chain file or from the API."""

    id = fields.String(metadata={"description": "The API's: a hex id; a file's: <type>.<chain>.<Task>.<name>."})
    source = fields.String(
        metadata={"description": "api, or file (edited in its file, paused over HTTP).", "enum": list(SOURCES)}
    )
    prefix = fields.String(metadata={"description": "The S3 prefix or local folder listed."})
    params = fields.Dict(keys=fields.String(), values=fields.Raw())
    cursor = fields.String(
        allow_none=True,
        metadata={"description": "The last key dealt with: listings start after it (null: a file's, not started)."},
    )
    last_object = fields.String(allow_none=True, metadata={"description": "The last object claimed, its full URI."})
    polled_at = fields.String(allow_none=True, metadata={"description": "When it was last listed (ISO 8601 UTC)."})
    error = fields.String(
        allow_none=True, metadata={"description": "What its last listing failed with (the store's error), or null."}
    )
    objects_seen = fields.Integer(metadata={"description": "Objects claimed so far."})
    runs_made = fields.Integer(metadata={"description": "Runs it queued (or joined)."})
    skipped = fields.Integer(metadata={"description": "Objects skipped (the task could not be made for them)."})
    files_waiting = fields.Integer(metadata={"description": "Objects whose run has not ended yet."})
    created_at = fields.Float(allow_none=True, metadata={"description": "Unix time; null for a file's not yet seen."})
    updated_at = fields.Float(allow_none=True)
    path = fields.String(allow_none=True, metadata={"description": "A file trigger's chain file, <type>/<file>."})
    objects_url = fields.Url(metadata={"description": "Its claimed objects, newest first (GET)."})


class TriggerObjectSchema(ma.Schema):
    key = fields.String(metadata={"description": "The object's key (under an S3 prefix) or path past the folder."})
    uri = fields.String(metadata={"description": "Its full URI (s3://bucket/key) or absolute path."})
    version = fields.String(metadata={"description": "Its ETag, or a local file's modification time."})
    state = fields.String(metadata={"enum": list(OBJECT_STATES)})
    reason = fields.String(allow_none=True, metadata={"description": "Why it was skipped."})
    run_id = fields.String(allow_none=True)
    job_status = fields.String(allow_none=True, metadata={"description": "Its run's job status, if it made one."})
    run_url = fields.Url(allow_none=True)
    modified = fields.Float(allow_none=True, metadata={"description": "When it last changed (unix time, the store's)."})
    recorded_at = fields.Float(metadata={"description": "When the trigger claimed it (unix time)."})
    lag = fields.Float(allow_none=True, metadata={"description": "Seconds from its last change to its claim."})


class TriggerObjectsSchema(ma.Schema):
    trigger_id = fields.String()
    counts = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "The objects listed by state: queued, done, skipped."},
    )
    objects = fields.List(fields.Nested(TriggerObjectSchema), metadata={"description": "Newest first."})


class ObjectsQuerySchema(KnownQuerySchema):
    limit = fields.Integer(
        load_default=50,
        validate=ma.validate.Range(1, 1000),
        metadata={"description": "How many of the newest objects (default 50)."},
    )


TriggerEnvelope = enveloped("TriggerEnvelope", fields.Nested(TriggerSchema))
TriggersEnvelope = enveloped("TriggersEnvelope", fields.List(fields.Nested(TriggerSchema)))
TriggerObjectsEnvelope = enveloped("TriggerObjectsEnvelope", fields.Nested(TriggerObjectsSchema))
