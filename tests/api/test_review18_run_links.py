"""review18: a run's own page links the task in luigi's visualiser, as the README says of it and of a key's status."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from nectar.config import Settings

HELLO = "/api/chains/testchains/hello_luigiworld_chain"


def test_a_runs_page_links_its_task_in_the_visualiser(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    """README, *What a status says*: "``GET /api/chainstatus?chain=<key>`` (and ``GET /api/runs/<run_id>``) answers
    ... ``scheduler_url`` (the task in luigi's visualiser)". A newcomer holding a ``run_id`` (from ``/api/runs``, a
    schedule's fires, a trigger's objects) finds the link on the key's status and not on the run's page."""
    client = client_for(settings.replace(scheduler_url="http://127.0.0.1:9"))
    queued = client.post(f"{HELLO}/WithDependencyTask?aparam=review18").get_json()["data"]
    by_key = client.get(queued["status_url"]).get_json()["data"]
    assert by_key["scheduler_url"].startswith("http://127.0.0.1:9/static/visualiser/")  # the key's status has it

    by_run = client.get(f"/api/runs/{queued['run_id']}").get_json()["data"]

    assert by_run.get("scheduler_url") == by_key["scheduler_url"], sorted(by_run)
