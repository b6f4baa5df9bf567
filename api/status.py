"""The status of a submitted task, by its target key."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api import links
from api.context import nectar
from api.envelope import answer, error_responses
from api.schemas import KeyQuerySchema, StatusEnvelope
from nectar.keys import TargetKey
from nectar.runs import jsonable_run

blp = Blueprint("status", __name__, url_prefix="/api", description="Job status by target key.")
#: one instance for every request (given the class, webargs would build a schema per request)
KEY_QUERY = KeyQuerySchema()


@blp.route("/chainstatus")
class ChainStatus(MethodView):
    @blp.arguments(KEY_QUERY, location="query")
    @blp.response(200, StatusEnvelope)
    @error_responses(blp, 400, 404, 422, 503)
    def get(self, args):
        """The job status of a key, its steps, logs and (when DONE) a download URL"""
        service = nectar()
        status = service.status(TargetKey.parse(args["chain"]))
        run = status.run
        scheduler = service.scheduler
        shown = jsonable_run(run) if run else {}
        attempts = {name: shown.get(name) for name in ("attempt", "max_attempts", "retry_at")}
        return answer(
            {
                "key": status.key.path,
                "job_status": status.job_status,
                "run_id": run.id if run else None,
                **attempts,
                "run_url": links.external("runs.RunById", run_id=run.id) if run else None,
                "resource_url": links.resource_url(status),
                "expires_in": status.expires_in,
                "steps": status.steps,
                "failed_step": status.failed_step,
                "error": status.error,
                "stdout_url": links.log_url(status.key, "stdout"),
                "stderr_url": links.log_url(status.key, "stderr"),
                "scheduler_url": scheduler.task_url(run.task_id) if scheduler and run else None,
            }
        )
