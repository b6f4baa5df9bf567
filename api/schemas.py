"""The marshmallow schemas of what the API answers (the catalog, submissions, statuses, health)."""

from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import fields

from api.envelope import enveloped
from nectar.registry import STEP_STATES, RunState


class ParamSchema(ma.Schema):
    name = fields.String()
    kind = fields.String(metadata={"description": "int, float, bool, date, choice, list, dict, str, ..."})
    required = fields.Boolean()
    default = fields.Raw(allow_none=True, metadata={"description": "The default value, as JSON shows it."})
    description = fields.String(allow_none=True)
    significant = fields.Boolean(metadata={"description": "Whether the value is part of the target key."})
    choices = fields.List(fields.String(), allow_none=True)
    private = fields.Boolean(
        metadata={"description": "luigi's private visibility (a password): given as any other, never shown."}
    )


class TaskSchema(ma.Schema):
    name = fields.String()
    chain = fields.String()
    chain_type = fields.String()
    doc = fields.String(allow_none=True)
    params = fields.List(fields.Nested(ParamSchema))
    requires = fields.List(
        fields.String(),
        metadata={
            "description": "Its upstream tasks, when known without running it: `Name` in the same chain file, "
            "`<type>/<chain>/<Name>` in another, `<module>.<Name>` elsewhere."
        },
    )
    aliases = fields.List(
        fields.String(), metadata={"description": "Other module-level names of the class; URLs accept them too."}
    )
    api_href = fields.Url(metadata={"description": "GET: this description; POST: run the task."})


class HiddenTaskSchema(ma.Schema):
    name = fields.String()
    reason = fields.String(metadata={"description": "Why the chain does not expose it, and how to."})


class ChainSchema(ma.Schema):
    name = fields.String()
    chain_type = fields.String()
    error = fields.String(
        allow_none=True,
        metadata={"description": "Why the chain failed to import, or what is wrong with its `__nectar_tasks__`."},
    )
    tasks = fields.List(fields.Nested(TaskSchema))
    hidden = fields.List(
        fields.Nested(HiddenTaskSchema),
        metadata={"description": "The luigi tasks of the file that are not exposed, each with the reason."},
    )
    api_href = fields.Url()
    schedules = fields.List(
        fields.String(),
        metadata={"description": "The ids of the schedules its tasks declare (see /api/schedules)."},
    )
    schedule_errors = fields.List(
        fields.String(),
        metadata={"description": "Each schedule declared in the file that is not used, and why (task, field)."},
    )
    triggers = fields.List(
        fields.String(),
        metadata={"description": "The ids of the data triggers its tasks declare (see /api/triggers)."},
    )
    trigger_errors = fields.List(
        fields.String(),
        metadata={"description": "Each trigger declared in the file that is not used, and why (task, field)."},
    )


class ChainTypeSchema(ma.Schema):
    name = fields.String()
    chains = fields.List(fields.Nested(ChainSchema))
    api_href = fields.Url()


class OutputSchema(ma.Schema):
    target = fields.String(metadata={"description": "The output's absolute path or URI, as the task names it."})
    url = fields.String(
        allow_none=True,
        metadata={"description": "Its download URL (S3 presigned, or signed by this API); null: see note."},
    )
    note = fields.String(
        allow_none=True, metadata={"description": "Why it has no URL (e.g. not under an allowed folder)."}
    )


class DownloadsSchema(ma.Schema):
    """Where a task's outputs are and how to download them."""

    resource_url = fields.String(
        allow_none=True, metadata={"description": "The first output's download URL, when DONE and it exists."}
    )
    resource_note = fields.String(allow_none=True, metadata={"description": "Why resource_url is null."})
    expires_in = fields.Integer(allow_none=True, metadata={"description": "Seconds a download URL stays valid."})
    outputs = fields.List(
        fields.Nested(OutputSchema), metadata={"description": "Every output of the task (its output(), flattened)."}
    )


class SubmissionSchema(DownloadsSchema):
    key = fields.String(metadata={"description": "chains/<type>/<chain>/<Task>/<md5>/out.txt"})
    status_url = fields.Url()
    job_status = fields.String(metadata={"description": "PENDING, RUNNING, WAITING (for its data) or DONE."})
    run_id = fields.String(allow_none=True)
    created = fields.Boolean(metadata={"description": "False when an identical run was already queued or running."})


class BatchRowSchema(SubmissionSchema):
    row = fields.Integer(metadata={"description": "The row's number, from 1."})
    status = fields.Integer(metadata={"description": "202 queued or active, 200 done, 413/422 refused, 503 full."})
    message = fields.String()
    errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), allow_none=True, metadata={"description": "Why."}
    )


class BatchSchema(ma.Schema):
    rows = fields.List(fields.Nested(BatchRowSchema))
    counts = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "queued, done, invalid, unavailable."}
    )


#: the query arguments of flask-smorest's pagination, read beside an endpoint's own (``@blp.paginate``)
PAGE_ARGUMENTS = frozenset({"page", "page_size"})


class KnownQuerySchema(ma.Schema):
    """An endpoint's query arguments, each one it knows: a name it does not take is a 422 naming it and the ones it
    takes. webargs passes over an unknown query argument, so ``/api/runs?status=FAILED`` (or ``?limit=1``, or a
    backfill's ``?max_active=2``) did as if it had not been given: every run listed, unfiltered. ``paged``: the
    endpoint paginates (``page``, ``page_size`` are read beside it); ``renamed``: an old name, and what its 422 says."""

    paged: ClassVar[bool] = False
    renamed: ClassVar[dict[str, str]] = {}

    @ma.pre_load
    def known_names(self, data: Any, **kwargs: Any) -> Any:
        taken = {field.data_key or name for name, field in self.fields.items()} | (
            PAGE_ARGUMENTS if self.paged else set()
        )
        errors = {
            name: [
                self.renamed[name]
                if name in self.renamed
                else f"not a query argument of this endpoint (it takes {', '.join(sorted(taken)) or 'none'})"
            ]
            for name in data
            if name not in taken
        }
        if errors:
            raise ma.ValidationError(errors)
        return data


class PagesQuerySchema(KnownQuerySchema):
    """A paginated listing with no filter: its ``page`` and ``page_size`` alone."""

    paged = True


class BatchQuerySchema(KnownQuerySchema):
    atomic = fields.Boolean(
        load_default=False, metadata={"description": "Queue nothing unless every row is valid (422 otherwise)."}
    )


class StepSchema(ma.Schema):
    task = fields.String()
    state = fields.String(
        metadata={
            "description": "PENDING, RUNNING, DONE, FAILED or CANCELLED (every step not yet over, when its run is "
            "cancelled).",
            "enum": list(STEP_STATES),
        }
    )
    executed = fields.Boolean(metadata={"description": "False when the step was already complete."})
    error = fields.String(allow_none=True)
    key = fields.String(allow_none=True)
    stdout_url = fields.Url(
        allow_none=True,
        metadata={"description": "This step's stdout (live while it runs); null: it has no key or no log (log_note)."},
    )
    stderr_url = fields.Url(allow_none=True, metadata={"description": "This step's stderr; null as stdout_url."})
    log_note = fields.String(
        allow_none=True,
        metadata={"description": "Why a step with a key has no log URLs: not started, or done before this run."},
    )


class LogLinksSchema(ma.Schema):
    """The log links of a status or a run: the requested task's, or the step running before it."""

    stdout_url = fields.Url(
        allow_none=True,
        metadata={
            "description": "The stdout of the task named by logs_task: the requested task once it started; "
            "before, the step running now (else the one that failed); null while no task has a log."
        },
    )
    stderr_url = fields.Url(allow_none=True, metadata={"description": "The stderr of the task named by logs_task."})
    logs_task = fields.String(allow_none=True, metadata={"description": "The task whose logs the two URLs are."})
    logs_note = fields.String(
        allow_none=True,
        metadata={"description": "When the URLs are not the requested task's (or null): why, in a sentence."},
    )


class TriggeredSchema(ma.Schema):
    """What a run (and a status) says of the trigger that made it and of the data it waits for."""

    trigger_id = fields.String(
        allow_none=True, metadata={"description": "The data trigger that made the run (null: not a trigger's)."}
    )
    objects = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "The objects (s3:// URIs or absolute paths) a trigger made the run for."},
    )
    waiting_for = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "WAITING: the objects (or `run:<id>`: runs that must be DONE) it waits for."},
    )
    wait_until = fields.String(
        allow_none=True, metadata={"description": "WAITING: when its wait times out, ISO 8601 UTC."}
    )


class RunSchema(TriggeredSchema):
    run_id = fields.String(metadata={"description": "The run's id, as statuses and submissions name it."})
    key = fields.String()
    task = fields.String(metadata={"description": "<type>/<chain>/<Task>"})
    params = fields.Dict(keys=fields.String(), values=fields.String())
    task_id = fields.String(metadata={"description": "luigi's task id"})
    job_status = fields.String(
        metadata={
            "description": "PENDING, RUNNING, WAITING, DONE, FAILED or CANCELLED: the run's, as statuses name it."
        }
    )
    queued_at = fields.Float()
    started_at = fields.Float(allow_none=True)
    finished_at = fields.Float(allow_none=True)
    worker = fields.String(allow_none=True, metadata={"description": "host:pid running the current attempt."})
    attempt = fields.Integer(metadata={"description": "Attempts started so far (0: never started)."})
    max_attempts = fields.Integer(
        metadata={"description": "1 + the retries its policy allows (a luigi task's retry_count: that many)."}
    )
    retry_at = fields.Float(allow_none=True, metadata={"description": "When a failed run is tried again."})
    heartbeat_at = fields.Float(allow_none=True)
    waiting_since = fields.Float(
        allow_none=True,
        metadata={
            "description": "PENDING: since when luigid has not granted it (why: in error); WAITING: since when it "
            "waits for its data."
        },
    )
    failed_step = fields.String(allow_none=True)
    error = fields.String(
        allow_none=True,
        metadata={
            "description": "The last attempt's error, if it failed; for a PENDING run (GET /api/runs/<id>), why it is "
            "not started where that is its store's full disk."
        },
    )
    schedule_id = fields.String(
        allow_none=True, metadata={"description": "The schedule that made the run (null: it was submitted)."}
    )
    fire_time = fields.String(
        allow_none=True, metadata={"description": "The fire time it was made for, ISO 8601 UTC (null: submitted)."}
    )
    status_url = fields.Url()
    cancel_url = fields.Url(metadata={"description": "POST here to cancel the run."})


class AttemptSchema(ma.Schema):
    attempt = fields.Integer(metadata={"description": "Its number: 1 for the first."})
    state = fields.String(
        metadata={
            "description": "How it ended: DONE, FAILED (the run was retried after it, or failed) or CANCELLED.",
            "enum": ["DONE", "FAILED", "CANCELLED"],
        }
    )
    failed_step = fields.String(allow_none=True, metadata={"description": "The step it failed at."})
    error = fields.String(allow_none=True, metadata={"description": "Why it failed (or was cancelled)."})
    started_at = fields.Float(allow_none=True)
    ended_at = fields.Float()


class RunDetailSchema(RunSchema, LogLinksSchema, DownloadsSchema):
    """One run, as GET /api/runs/<id> answers it: with its steps, its ended attempts and logs."""

    scheduler_url = fields.String(allow_none=True, metadata={"description": "The task in luigid's visualiser."})
    steps = fields.List(fields.Nested(StepSchema), metadata={"description": "Each in its current attempt's state."})
    attempts = fields.List(
        fields.Nested(AttemptSchema),
        metadata={
            "description": "Each ended attempt, the first first: how it ended and its error (a retry's history)."
        },
    )


class StatusSchema(LogLinksSchema, DownloadsSchema, TriggeredSchema):
    key = fields.String()
    job_status = fields.String(
        metadata={
            "description": "PENDING, RUNNING, WAITING, DONE, FAILED, CANCELLED, UNKNOWN, or MISSING (DONE, its output "
            "deleted since)."
        }
    )
    run_id = fields.String(allow_none=True)
    attempt = fields.Integer(allow_none=True, metadata={"description": "The run's current or last attempt."})
    max_attempts = fields.Integer(allow_none=True)
    retry_at = fields.Float(
        allow_none=True, metadata={"description": "PENDING after a failed attempt: when it is tried again."}
    )
    waiting_since = fields.Float(
        allow_none=True,
        metadata={
            "description": "PENDING: since when luigid has not granted it (why: in error); WAITING: since when it "
            "waits for its data."
        },
    )
    run_url = fields.Url(allow_none=True, metadata={"description": "The run (GET), and where to cancel it."})
    schedule_id = fields.String(
        allow_none=True, metadata={"description": "The schedule that made the run, if one did."}
    )
    fire_time = fields.String(
        allow_none=True, metadata={"description": "The fire time the run was made for, ISO 8601 UTC."}
    )
    steps = fields.List(fields.Nested(StepSchema))
    failed_step = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    scheduler_url = fields.String(allow_none=True, metadata={"description": "The task in luigid's visualiser."})


class CheckSchema(ma.Schema):
    ok = fields.Boolean(metadata={"description": "Whether the dependency answers."})
    status = fields.String(
        metadata={
            "description": "ok; degraded (luigid down: runs wait in the queue); down (the registry or the store)."
        }
    )
    detail = fields.String(
        metadata={
            "description": "What the check found (addresses, the driver's error), to a request with an API token "
            "only; else where the details are."
        }
    )


ChainTypesEnvelope = enveloped("ChainTypesEnvelope", fields.List(fields.Nested(ChainTypeSchema)))
ChainTypeEnvelope = enveloped("ChainTypeEnvelope", fields.Nested(ChainTypeSchema))
ChainEnvelope = enveloped("ChainEnvelope", fields.Nested(ChainSchema))
TaskEnvelope = enveloped("TaskEnvelope", fields.Nested(TaskSchema))
SubmissionEnvelope = enveloped("SubmissionEnvelope", fields.Nested(SubmissionSchema))
StatusEnvelope = enveloped("StatusEnvelope", fields.Nested(StatusSchema))
RunEnvelope = enveloped("RunEnvelope", fields.Nested(RunSchema))
RunDetailEnvelope = enveloped("RunDetailEnvelope", fields.Nested(RunDetailSchema))
BatchEnvelope = enveloped("BatchEnvelope", fields.Nested(BatchSchema))
RunsEnvelope = enveloped("RunsEnvelope", fields.List(fields.Nested(RunSchema)))
HealthEnvelope = enveloped(
    "HealthEnvelope",
    fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), metadata={"description": "Each check."}),
)


_NAME = ma.validate.Regexp(r"^[A-Za-z0-9_]{1,128}$", error="not a name of letters, digits and underscores")


class RunsQuerySchema(KnownQuerySchema):
    paged = True
    renamed = {"state": "renamed job_status, the name statuses use"}

    chain_type = fields.String(validate=_NAME, metadata={"description": "Only runs of this chain type."})
    chain = fields.String(validate=_NAME, metadata={"description": "Only runs of this chain (e.g. sales_chain)."})
    task = fields.String(validate=_NAME, metadata={"description": "Only runs of this task class."})
    job_status = fields.String(
        validate=ma.validate.OneOf([state.value for state in RunState]),
        metadata={"description": "Only runs in this job status: PENDING, RUNNING, WAITING, DONE, FAILED or CANCELLED."},
    )
    since = fields.Float(metadata={"description": "Queued at or after this unix time."})
    until = fields.Float(metadata={"description": "Queued before this unix time."})


class KeyQuerySchema(ma.Schema):
    chain = fields.String(
        required=True, metadata={"description": "A target key, chains/<type>/<chain>/<Task>/<md5>/out.txt."}
    )
