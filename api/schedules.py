"""Schedules: list, make, change, pause and remove them, backfill one, and follow its fires."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api import links
from api.context import facade
from api.envelope import answer, doc_only, error_responses
from api.schedule_schemas import (
    BackfillEnvelope,
    BackfillQuerySchema,
    FiresEnvelope,
    FiresQuerySchema,
    ScheduleBodySchema,
    ScheduleChangeSchema,
    ScheduleEnvelope,
    SchedulesEnvelope,
)
from api.schemas import PagesQuerySchema
from api.submission import json_object
from nectar.errors import InvalidParameters
from nectar.registry import Run
from nectar.schedules.book import MAX_BACKFILL, ScheduleView
from nectar.schedules.model import FIRE_STATES, Fire
from nectar.schedules.times import Timing

blp = Blueprint(
    "schedules",
    __name__,
    url_prefix="/api/schedules",
    description="Schedules: a task fired at cron or interval times, from chain files or made here; backfills.",
)


def schedule_out(view: ScheduleView) -> dict[str, Any]:
    return {
        **view.to_dict(),
        "fires_url": links.external("schedules.Fires", schedule_id=view.id),
        "backfill_url": links.external("schedules.Backfill", schedule_id=view.id),
    }


def fire_out(fire: Fire, run: Run | None, timing: Timing) -> dict[str, Any]:
    return {
        "fire_time": timing.iso(fire.fire_time),
        "state": fire.state,
        "reason": fire.reason,
        "run_id": fire.run_id,
        "job_status": run.state.value if run else None,
        "run_url": links.run_url(run.id) if run else None,
        "backfill_id": fire.backfill_id,
        "queued_at": fire.queued_at,
        "lag": fire.lag,
    }


def fires_out(
    schedule_id: str, backfill_id: str | None, fires: Sequence[tuple[Fire, Run | None]], timing: Timing
) -> dict[str, Any]:
    """Fires and their runs, with how many are in each state and each job status: a backfill's progress."""
    states = Counter(fire.state for fire, _ in fires)
    statuses = Counter(run.state.value for _, run in fires if run is not None)
    return {
        "schedule_id": schedule_id,
        "backfill_id": backfill_id,
        "counts": {state: states[state] for state in FIRE_STATES},
        "job_statuses": dict(sorted(statuses.items())),
        "fires": [fire_out(fire, run, timing) for fire, run in fires],
    }


@blp.route("")
class Schedules(MethodView):
    @blp.arguments(PagesQuerySchema, location="query")
    @blp.response(200, SchedulesEnvelope)
    @blp.paginate(page_size=100, max_page_size=1000)
    @error_responses(blp, 422)
    def get(self, _query, pagination_parameters):
        """Every schedule, from the chain files first, then those made here: next fires, last fire, paused

        The ``X-Pagination`` header says how many there are, and the pages.
        """
        views = facade().schedules.views()
        page = pagination_parameters
        page.item_count = len(views)
        return answer([schedule_out(view) for view in views[page.first_item : page.last_item + 1]])

    @doc_only(blp.arguments(ScheduleBodySchema))
    @blp.response(201, ScheduleEnvelope, description="Made: it fires from start (default now) on, unless paused.")
    @error_responses(blp, 413, 422)
    def post(self):
        """Make a schedule: a task, a cron or an interval, its fixed parameters and policies

        Every bad field is named in a 422 (a bad cron, an unknown zone or task, a missing or badly typed
        parameter, a ``fire_time_param`` that is no date or time parameter, an unknown field) and nothing is
        stored. The schedule fires on every machine's clock within a second.
        """
        return answer(schedule_out(facade().schedules.create(json_object("the schedule's fields"))), 201, "created")


@blp.route("/<schedule_id>")
class ScheduleById(MethodView):
    @blp.response(200, ScheduleEnvelope)
    @error_responses(blp, 404)
    def get(self, schedule_id):
        """One schedule: its definition, next 5 fire times and last fire"""
        return answer(schedule_out(facade().schedules.view(schedule_id)))

    @doc_only(blp.arguments(ScheduleChangeSchema))
    @blp.response(200, ScheduleEnvelope)
    @error_responses(blp, 404, 409, 413, 422)
    def patch(self, schedule_id):
        """Pause or resume a schedule (``{"paused": true}``), or change a field of one made here

        A schedule declared in a chain file is changed in its file: a PATCH of anything but ``paused``
        answers 409. Resumed, a schedule fires from then on (the fire times it had while paused are not
        missed ones). A changed definition makes every later fire; a fire is made by the old or the new one.
        """
        body = json_object("the schedule's fields")
        if "start" in body:  # the book would take it as a field of the definition, and ignore it
            raise InvalidParameters({"start": ["only when a schedule is made: a resumed one fires from then on"]})
        return answer(schedule_out(facade().schedules.change(schedule_id, body)))

    @blp.response(200, ScheduleEnvelope, description="Removed: it fires no more; its past fires and runs stay.")
    @error_responses(blp, 404, 409)
    def delete(self, schedule_id):
        """Remove a schedule made here (one from a chain file is removed from its file: 409)"""
        book = facade().schedules
        view = book.view(schedule_id)
        book.delete(schedule_id)
        return answer(schedule_out(view), 200, "deleted")


@blp.route("/<schedule_id>/backfill")
class Backfill(MethodView):
    @blp.arguments(BackfillQuerySchema, location="query")
    @blp.response(202, BackfillEnvelope, description="Queued at once as far as max_active allows; the rest waits.")
    @error_responses(blp, 404, 422)
    def post(self, query, schedule_id):
        """Fire a schedule for every fire time in [start, end], at most max_active at a time

        A fire time fired before is not made again, and a run whose output exists is not run again.
        ``progress_url`` lists the backfill's fires with their runs' job statuses as they go.
        """
        book = facade().schedules
        backfill = book.backfill(schedule_id, query["start"], query["end"])
        timing = book.view(schedule_id).spec.timing
        fires = book.fires(schedule_id, MAX_BACKFILL, backfill.id)
        data = {
            **fires_out(schedule_id, backfill.id, fires, timing),
            "fire_times": len(backfill.fire_times),
            "existing": backfill.existing,
            "progress_url": links.external("schedules.Fires", {"backfill": backfill.id}, schedule_id=schedule_id),
        }
        return answer(data, 202, "queued")


@blp.route("/<schedule_id>/fires")
class Fires(MethodView):
    @blp.arguments(FiresQuerySchema, location="query")
    @blp.response(200, FiresEnvelope)
    @error_responses(blp, 404, 422)
    def get(self, query, schedule_id):
        """A schedule's fires, newest first, each with its run's job status, and how many are in each state

        With ``backfill``: every fire of that backfill, its progress.
        """
        book = facade().schedules
        timing = book.view(schedule_id).spec.timing
        backfill_id = query.get("backfill")
        limit = MAX_BACKFILL if backfill_id else query["limit"]
        return answer(fires_out(schedule_id, backfill_id, book.fires(schedule_id, limit, backfill_id), timing))
