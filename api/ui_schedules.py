"""The web UI's schedules: every schedule with its next and last fires, pause and resume, backfill, a schedule's fires.

The pages read :class:`~nectar.schedules.book.ScheduleBook` like the other pages read the façade. Pausing and
backfilling are ``POST`` s of the page's script with the API token in the header (like a run's cancel button), so
:mod:`api.auth` asks them for a write token and :mod:`api.origin` refuses them from a page of another site; they
answer the envelope, a bad value a 422 naming its field, a change refused a 409.
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, request, url_for

from api.context import facade
from api.envelope import dumped_answer
from api.ui import page
from nectar.errors import InvalidParameters
from nectar.registry import Run
from nectar.schedules.book import Backfill, ScheduleView
from nectar.schedules.model import Fire, ScheduleSpec
from nectar.schedules.times import Timing

#: how many fires a schedule's page lists
FIRES_SHOWN = 200


def when(spec: ScheduleSpec) -> str:
    """When a schedule fires, as people read it: ``0 3 * * * (Europe/Paris)``, ``every 900 s (UTC)``."""
    timing = spec.timing
    rule = timing.cron if timing.cron is not None else f"every {timing.interval_s} s"
    return f"{rule} ({timing.timezone})"


def schedule_card(view: ScheduleView) -> dict[str, Any]:
    """What a schedule's card shows: its JSON (as ``/api/schedules`` gives it) and the links and URLs around it."""
    data = view.to_dict()
    chain_type, chain, task = view.spec.ref
    last = data["last_fire"]
    return {
        "data": data,
        "when": when(view.spec),
        "task_url": url_for("ui.task_page", chain_type=chain_type, chain=chain, task=task),
        "page_url": url_for("ui.schedule_page", schedule_id=view.id),
        "paused_url": url_for("ui.schedule_paused", schedule_id=view.id),
        "backfill_url": url_for("ui.schedule_backfill", schedule_id=view.id),
        "last_run_url": url_for("ui.run_page", run_id=last["run_id"]) if last and last["run_id"] else None,
    }


def fire_row(timing: Timing, fire: Fire, run: Run | None) -> dict[str, Any]:
    """One fire as the pages and the backfill answer show it: its time in the schedule's zone, state and run."""
    return {
        "fire_time": timing.iso(fire.fire_time),
        "state": fire.state,
        "reason": fire.reason,
        "run_id": fire.run_id,
        "run_url": url_for("ui.run_page", run_id=fire.run_id) if fire.run_id else None,
        "job_status": run.state.value if run else None,
        "backfill_id": fire.backfill_id,
    }


def backfill_answer(backfill: Backfill, timing: Timing) -> dict[str, Any]:
    runs = facade().runs
    fires = [fire_row(timing, fire, runs.get(fire.run_id) if fire.run_id else None) for fire in backfill.fires]
    return {
        "id": backfill.id,
        "schedule_id": backfill.schedule_id,
        "fire_times": len(backfill.fire_times),
        "existing": backfill.existing,
        "fires": sorted(fires, key=lambda fire: fire["fire_time"]),
        "progress_url": url_for("ui.schedule_page", schedule_id=backfill.schedule_id, backfill=backfill.id),
    }


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidParameters({"body": ["must be a JSON object"]})
    return body


def paused_body() -> bool:
    """The ``paused`` of a pause button's ``{"paused": true|false}`` (a 422 naming it if it is neither)."""
    paused = json_body().get("paused")
    if not isinstance(paused, bool):
        raise InvalidParameters({"paused": [f"must be true or false, not {paused!r}"]})
    return paused


@page("/ui/schedules")
def schedules_page() -> str:
    service = facade()
    cards = [schedule_card(view) for view in service.schedules.views()]
    # a schedule declared wrong in a chain file is not in the list: say why, beside its chain
    errors = [(chain.ref, error) for chain in service.chains() for error in chain.schedule_errors]
    return render_template("schedules.html", cards=cards, errors=errors, title="Schedules")


@page("/ui/schedules/<schedule_id>")
def schedule_page(schedule_id: str) -> str:
    book = facade().schedules
    view = book.view(schedule_id)
    backfill = request.args.get("backfill") or None
    fires = [fire_row(view.spec.timing, fire, run) for fire, run in book.fires(schedule_id, FIRES_SHOWN, backfill)]
    return render_template(
        "schedule.html",
        card=schedule_card(view),
        fires=fires,
        backfill=backfill,
        shown=FIRES_SHOWN,
        title=f"Schedule {schedule_id}",
    )


@page("/ui/schedules/<schedule_id>/paused", methods=["POST"])
def schedule_paused(schedule_id: str) -> Response:
    """``{"paused": true|false}``: pause or resume the schedule (one from a file too); the schedule as it is now."""
    return dumped_answer(facade().schedules.change(schedule_id, {"paused": paused_body()}).to_dict())


@page("/ui/schedules/<schedule_id>/backfill", methods=["POST"])
def schedule_backfill(schedule_id: str) -> Response:
    """``{"start": ..., "end": ...}`` (ISO dates or date-times, in the schedule's zone): what the backfill queued."""
    body = json_body()
    missing = {name: ["required: an ISO 8601 date or date-time"] for name in ("start", "end") if not body.get(name)}
    if missing:
        raise InvalidParameters(missing)
    book = facade().schedules
    backfill = book.backfill(schedule_id, body["start"], body["end"])
    return dumped_answer(backfill_answer(backfill, book.view(schedule_id).spec.timing), 201)
