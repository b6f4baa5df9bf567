"""A schedule's or a trigger's fixed value of a parameter luigi calls private (``ParameterVisibility.PRIVATE``: a
password) is given as any other and never shown: not in what ``POST`` answers, nor in the listings, one schedule's or
trigger's answer, or the UI's pages, as a run's answers do not show it (tests/api/test_review20_private_param.py).
Its fires still give the task its value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry.model import RunFilter
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.helpers.registries import closed_at_end

#: a task with a private token (no default) and a public user
CHAIN = """
import luigi
from luigi.parameter import ParameterVisibility


class TokenTask(luigi.Task):
    user = luigi.Parameter()
    token = luigi.Parameter(visibility=ParameterVisibility.PRIVATE)
    path = luigi.Parameter(default="")

    def output(self):
        return luigi.LocalTarget(f"/nowhere/{self.user}")
"""

TASK = "private/token_chain/TokenTask"
SECRET = "s3cret-value"


def made_and_shown(client: FlaskClient, kind: str, body: dict[str, object], user: str) -> str:
    """POST ``body`` to ``/api/<kind>`` with the user and the token as fixed values: its id, after checking that
    the answer, the listing, its own answer and the UI's two pages name the user and never the token."""
    made = client.post(f"/api/{kind}", json={**body, "params": {"user": user, "token": SECRET}})
    assert made.status_code == 201, made.get_json()
    data = made.get_json()["data"]
    assert data["params"] == {"user": user}, data
    texts = []
    for path in (f"/api/{kind}", f"/api/{kind}/{data['id']}", f"/ui/{kind}", f"/ui/{kind}/{data['id']}"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        texts.append(answer.get_data(as_text=True))
    text = "\n".join(texts)
    assert SECRET not in text and user in text
    return str(data["id"])


def test_a_schedules_private_fixed_value_is_never_shown(
    client: FlaskClient, settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    """The schedule is made with the token; every answer names its user and none its token; its fire's run is given
    it. Failed before: ``s3cret-value`` in POST's answer (``params``)."""
    write_chain("private/token_chain", CHAIN)
    sid = made_and_shown(client, "schedules", {"task": TASK, "cron": "0 3 * * *"}, "ann")
    # a PATCH that does not name the params keeps them: the fire still gives the token
    patched = client.patch(f"/api/schedules/{sid}", json={"cron": "0 4 * * *"})
    assert patched.status_code == 200, patched.get_json()
    assert SECRET not in patched.get_data(as_text=True)
    nectar = closed_at_end(Nectar(settings))
    spec = nectar.schedules.view(sid).spec
    assert spec.params == {"user": "ann", "token": SECRET} and spec.timing.cron == "0 4 * * *"


def test_a_triggers_private_fixed_value_is_never_shown(
    client: FlaskClient, settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The same for a trigger on a landing folder; the run it makes for a landed file has the token. Failed before:
    ``s3cret-value`` in POST's answer."""
    write_chain("private/token_chain", CHAIN)
    landing = tmp_path / "landing"
    landing.mkdir()
    made_and_shown(client, "triggers", {"task": TASK, "prefix": str(landing), "glob": "*.csv", "param": "path"}, "bo")
    (landing / "a.csv").write_text("x\n")
    nectar = closed_at_end(Nectar(settings))
    TriggerLoop(nectar.triggers).tick()
    runs, _ = nectar.runs.find(RunFilter())
    assert [run.params["token"] for run in runs] == [SECRET], [json.dumps(run.params) for run in runs]
    listed = client.get("/api/runs").get_data(as_text=True)
    assert SECRET not in listed and "bo" in listed
