"""Runs: the list (filtered, paginated), one by its id, and cancelling it."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api import links
from api.context import facade
from api.envelope import answer, error_responses
from api.schemas import RunDetailEnvelope, RunEnvelope, RunsEnvelope, RunsQuerySchema
from nectar.errors import InvalidParameters
from nectar.keys import TargetKey
from nectar.registry import Run, RunFilter, RunState, jsonable_attempt, jsonable_run
from nectar.status import JobStatus, log_source
from nectar.stores.base import TargetStore

#: the most runs a page may skip (an integer both SQLite and PostgreSQL take as an OFFSET)
MAX_OFFSET = 2**62

blp = Blueprint("runs", __name__, url_prefix="/api/runs", description="Runs: list them, look one up, cancel it.")


def run_out(run: Run) -> dict:
    return {
        **jsonable_run(run),
        "status_url": links.status_url(TargetKey.parse(run.key)),
        "cancel_url": links.external("runs.CancelRun", run_id=run.id),
    }


@blp.route("")
class Runs(MethodView):
    @blp.arguments(RunsQuerySchema, location="query")
    @blp.response(200, RunsEnvelope)
    @blp.paginate(page_size=50, max_page_size=500)
    @error_responses(blp, 422)
    def get(self, query, pagination_parameters):
        """Runs, newest first: filter by chain type, chain, task, job status and queue time

        The ``X-Pagination`` header says how many runs match, and the pages.
        """
        state = query.get("job_status")
        where = RunFilter(
            chain_type=query.get("chain_type"),
            chain=query.get("chain"),
            task=query.get("task"),
            state=RunState(state) if state else None,
            since=query.get("since"),
            until=query.get("until"),
        )
        page = pagination_parameters
        if page.first_item > MAX_OFFSET:
            raise InvalidParameters({"page": [f"beyond any page: at most {MAX_OFFSET} runs can be skipped"]})
        runs, total = facade().find_runs(where, offset=page.first_item, limit=page.page_size)
        page.item_count = total
        return answer([run_out(run) for run in runs])


@blp.route("/<run_id>")
class RunById(MethodView):
    @blp.response(200, RunDetailEnvelope)
    @error_responses(blp, 404)
    def get(self, run_id):
        """One run: its state, attempt, worker, last error, steps, ended attempts and logs

        The log links follow the step running now until the requested task starts (``logs_task``
        names whose they are); each step has its own.
        """
        service = facade()
        run = service.run(run_id)
        steps = service.steps(run.id)
        key = TargetKey.parse(run.key)
        out = run_out(run)
        if run.state is RunState.PENDING and not run.error:  # a queued run's why, where it is the store's full disk:
            full = _no_room(service.store_of(key))  # the workers claim nothing till there is room (review24)
            if full:
                out["error"] = f"not started: {full}"
        return answer(
            {
                **out,
                "scheduler_url": service.visualiser_url(run.task_id),  # as its key's status links it
                "steps": [links.step_out(step) for step in steps],
                "attempts": [jsonable_attempt(attempt) for attempt in service.attempts(run.id)],
                **links.log_links(log_source(key, run.state.value, run, steps)),
                **links.downloads(JobStatus(key, run.state.value, run, steps)),
            }
        )


def _no_room(store: TargetStore) -> str | None:
    """What to say of ``store``'s disk if it is full now; None where it is not, or cannot be read (a local store's
    folder not made yet: /healthz says what is wrong with it)."""
    try:
        return store.no_room()
    except OSError:
        return None


@blp.route("/<run_id>/cancel")
class CancelRun(MethodView):
    @blp.response(200, RunEnvelope, description="Cancelled: a running attempt is interrupted within seconds.")
    @error_responses(blp, 404, 409)
    def post(self, run_id):
        """Cancel a queued or running run

        A queued run never starts. A running one is interrupted within one heartbeat interval
        (``NECTAR_HEARTBEAT``); the step it was running leaves no output, the steps it finished
        keep theirs. Its status becomes ``CANCELLED``. An ended run answers 409.
        """
        return answer(run_out(facade().cancel(run_id)), 200, "cancelled")
