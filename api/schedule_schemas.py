"""The marshmallow schemas of schedules: the bodies ``/api/schedules`` takes (documented) and what it answers."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from api.envelope import enveloped
from api.schemas import KnownQuerySchema
from nectar.preload import ON_TIMEOUT, STRATEGIES, TEMPLATE_FIELDS
from nectar.schedules.model import CATCHUP, FIRE_STATES, OVERLAP, SOURCES

_TEMPLATE = "A template of the fire time: " + ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS) + "."


class PreloadSchema(ma.Schema):
    """A pre-load strategy (starlake's): what a fire checks before its run is queued (see the README)."""

    strategy = fields.String(
        required=True,
        validate=ma.validate.OneOf(STRATEGIES),
        metadata={"description": "none; pending or imported (files under area, else skipped); ack (wait for a file)."},
    )
    area = fields.String(metadata={"description": f"pending, imported: s3://bucket/prefix/ or a folder. {_TEMPLATE}"})
    glob = fields.String(allow_none=True, metadata={"description": "pending, imported: only the files it matches."})
    import_task = fields.String(metadata={"description": "imported: <type>/<chain>/<Task> run first."})
    import_params = fields.Dict(keys=fields.String(), metadata={"description": "imported: its fixed parameters."})
    ack_path = fields.String(metadata={"description": f"ack: s3://bucket/key or an absolute path. {_TEMPLATE}"})
    ack_wait_timeout = fields.Float(
        metadata={"description": "ack, imported: seconds after the fire time the run waits at most (default 3600)."}
    )
    on_timeout = fields.String(
        validate=ma.validate.OneOf(ON_TIMEOUT),
        metadata={"description": "ack, imported: skip (default: the fire skipped, its run CANCELLED) or fail."},
    )


class ScheduleChangeSchema(ma.Schema):
    """A schedule's fields as ``PATCH`` takes them: any of them (a file schedule's: ``paused`` only).

    Documentation only: :meth:`nectar.schedules.book.ScheduleBook.create` and ``change`` read the body,
    so a file's schedule and the API's are checked by the same code, naming each bad field.
    """

    task = fields.String(metadata={"description": "The task fired: <type>/<chain>/<Task>."})
    cron = fields.String(
        allow_none=True, metadata={"description": "A 5-field cron expression (or interval_s).", "example": "0 3 * * *"}
    )
    interval_s = fields.Integer(allow_none=True, metadata={"description": "Fire every this many seconds (≥ 1)."})
    timezone = fields.String(metadata={"description": "The IANA zone the cron reads in (default UTC)."})
    params = fields.Dict(
        keys=fields.String(), metadata={"description": "The task's fixed parameters, as a submission takes them."}
    )
    fire_time_param = fields.String(
        allow_none=True, metadata={"description": "A date or date-time parameter that receives each fire time."}
    )
    fire_time_offset = fields.String(
        allow_none=True,
        metadata={"description": "An ISO 8601 duration added to the fire time first (-P1D: the day before)."},
    )
    catchup = fields.String(
        validate=ma.validate.OneOf(CATCHUP),
        metadata={"description": "Fires missed while no clock ran: none, the latest (default), or all."},
    )
    overlap = fields.String(
        validate=ma.validate.OneOf(OVERLAP),
        metadata={"description": "While the previous fire's run is active: allow (default), skip, or queue."},
    )
    max_active = fields.Integer(allow_none=True, metadata={"description": "Runs of the schedule active at most."})
    misfire_grace_s = fields.Float(
        metadata={"description": "A fire this late (seconds, default 60) is on time; later, catchup decides."}
    )
    starting_deadline_s = fields.Float(
        allow_none=True, metadata={"description": "A fire not queued this many seconds after its time is skipped."}
    )
    preload = fields.Nested(
        PreloadSchema, allow_none=True, metadata={"description": "A pre-load strategy (default none: fire as is)."}
    )
    paused = fields.Boolean(metadata={"description": "A paused schedule makes no fire; resumed, it fires from then."})


class ScheduleBodySchema(ScheduleChangeSchema):
    """A new schedule, as ``POST /api/schedules`` takes it."""

    task = fields.String(required=True, metadata={"description": "The task fired: <type>/<chain>/<Task>."})
    start = fields.String(
        metadata={"description": "ISO 8601 time the schedule fires from (default now; without offset: in timezone)."}
    )


class LastFireSchema(ma.Schema):
    fire_time = fields.String(metadata={"description": "ISO 8601, with the schedule's zone's offset."})
    state = fields.String(metadata={"enum": list(FIRE_STATES)})
    reason = fields.String(allow_none=True, metadata={"description": "Why it was skipped or held."})
    run_id = fields.String(allow_none=True)
    job_status = fields.String(allow_none=True, metadata={"description": "Its run's job status, if it made one."})


class ScheduleSchema(ScheduleChangeSchema):
    """A schedule as every listing shows it, from a chain file or from the API."""

    id = fields.String(metadata={"description": "The API's: a hex id; a file's: <type>.<chain>.<Task>.<name>."})
    source = fields.String(
        metadata={"description": "api, or file (edited in its file, paused over HTTP).", "enum": list(SOURCES)}
    )
    params = fields.Dict(keys=fields.String(), values=fields.Raw())
    timezone = fields.String()
    next_fires = fields.List(
        fields.String(), metadata={"description": "The next 5 fire times, ISO 8601 with offset; none while paused."}
    )
    last_fire = fields.Nested(LastFireSchema, allow_none=True)
    created_at = fields.Float(allow_none=True, metadata={"description": "Unix time; null for a file's not yet fired."})
    updated_at = fields.Float(allow_none=True)
    path = fields.String(allow_none=True, metadata={"description": "A file schedule's chain file, <type>/<file>."})
    error = fields.String(
        allow_none=True,
        metadata={"description": "Why a file schedule does not fire now: its chain file does not import (its error)."},
    )
    fires_url = fields.Url(metadata={"description": "Its fires, newest first (GET)."})
    backfill_url = fields.Url(metadata={"description": "POST with ?start=…&end=… to backfill."})


class FireSchema(LastFireSchema):
    run_url = fields.Url(allow_none=True)
    backfill_id = fields.String(allow_none=True, metadata={"description": "The backfill that asked for it, if any."})
    queued_at = fields.Float(allow_none=True, metadata={"description": "When its run was queued (unix time)."})
    lag = fields.Float(allow_none=True, metadata={"description": "Seconds from the fire time to its run's queueing."})


class FiresSchema(ma.Schema):
    schedule_id = fields.String()
    backfill_id = fields.String(allow_none=True)
    counts = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "The fires listed by state: queued, done, skipped, held."},
    )
    job_statuses = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "The runs of the fires listed by job status (PENDING, RUNNING, DONE, ...)."},
    )
    fires = fields.List(fields.Nested(FireSchema), metadata={"description": "Newest first."})


class BackfillSchema(FiresSchema):
    fire_times = fields.Integer(metadata={"description": "Fire times in [start, end]."})
    existing = fields.Integer(metadata={"description": "Of those, the ones fired before (not made again)."})
    progress_url = fields.Url(metadata={"description": "Its fires and their runs (GET), as they go."})


class FiresQuerySchema(KnownQuerySchema):
    backfill = fields.String(metadata={"description": "Only the fires of this backfill (all of them)."})
    limit = fields.Integer(
        load_default=50,
        validate=ma.validate.Range(1, 1000),
        metadata={"description": "How many of the newest fires (without backfill; default 50)."},
    )


class BackfillQuerySchema(KnownQuerySchema):
    start = fields.String(
        required=True, metadata={"description": "ISO 8601 date or date-time (without offset: the schedule's zone)."}
    )
    end = fields.String(required=True, metadata={"description": "Included; not in the future."})


ScheduleEnvelope = enveloped("ScheduleEnvelope", fields.Nested(ScheduleSchema))
SchedulesEnvelope = enveloped("SchedulesEnvelope", fields.List(fields.Nested(ScheduleSchema)))
FiresEnvelope = enveloped("FiresEnvelope", fields.Nested(FiresSchema))
BackfillEnvelope = enveloped("BackfillEnvelope", fields.Nested(BackfillSchema))
