"""The web UI's data triggers: every trigger with what it watches and how far it has got, pause and resume, its objects.

The pages read :class:`~nectar.triggers.book.TriggerBook` as the schedules' pages read theirs. Pausing is a ``POST``
of the page's script with the API token in the header (as a schedule's), so :mod:`api.auth` asks it for a write token
and :mod:`api.origin` refuses it from a page of another site; it answers the envelope, a bad value a 422 naming it.
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, url_for

from api.context import facade
from api.envelope import dumped_answer
from api.ui import page
from api.ui_schedules import paused_body
from nectar.registry import Run
from nectar.stores.listing import Location
from nectar.triggers.book import TriggerView
from nectar.triggers.model import TriggerObject

#: how many objects a trigger's page lists
OBJECTS_SHOWN = 200


def trigger_card(view: TriggerView) -> dict[str, Any]:
    """What a trigger's card shows: its JSON (as ``/api/triggers`` gives it) and the links around it."""
    chain_type, chain, task = view.spec.ref
    return {
        "data": view.to_dict(),
        "task_url": url_for("ui.task_page", chain_type=chain_type, chain=chain, task=task),
        "page_url": url_for("ui.trigger_page", trigger_id=view.id),
        "paused_url": url_for("ui.trigger_paused", trigger_id=view.id),
    }


def object_row(location: Location, found: TriggerObject, run: Run | None) -> dict[str, Any]:
    """One claimed object as a trigger's page shows it: its URI, state and run."""
    return {
        "key": found.object_key,
        "uri": location.uri(found.object_key),
        "state": found.state,
        "reason": found.reason,
        "run_id": found.run_id,
        "run_url": url_for("ui.run_page", run_id=found.run_id) if found.run_id else None,
        "job_status": run.state.value if run else None,
        "lag": found.lag,
    }


@page("/ui/triggers")
def triggers_page() -> str:
    service = facade()
    cards = [trigger_card(view) for view in service.triggers.views()]
    # a trigger declared wrong in a chain file is not in the list: say why, beside its chain
    errors = [(chain.ref, error) for chain in service.chains() for error in chain.trigger_errors]
    return render_template("triggers.html", cards=cards, errors=errors, title="Triggers")


@page("/ui/triggers/<trigger_id>")
def trigger_page(trigger_id: str) -> str:
    book = facade().triggers
    view = book.view(trigger_id)
    location = view.spec.location
    objects = [object_row(location, found, run) for found, run in book.objects(trigger_id, OBJECTS_SHOWN)]
    return render_template(
        "trigger.html", card=trigger_card(view), objects=objects, shown=OBJECTS_SHOWN, title=f"Trigger {trigger_id}"
    )


@page("/ui/triggers/<trigger_id>/paused", methods=["POST"])
def trigger_paused(trigger_id: str) -> Response:
    """``{"paused": true|false}``: pause or resume the trigger (one from a file too); the trigger as it is now."""
    return dumped_answer(facade().triggers.change(trigger_id, {"paused": paused_body()}).to_dict())
