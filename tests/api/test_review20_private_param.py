"""review20 (on main): a parameter luigi calls private (``luigi.Parameter(visibility=ParameterVisibility.PRIVATE)``,
luigi's own documented case: a password) is given on luigi's command line as any other (``--password ...``) and
kept out of the task's id and of what luigid shows. The API refuses it: ``params_of`` (nectar/params.py) lists every
parameter but the private ones as those a client may set, so a body naming it is a 422 "unknown parameter", and a
task whose private parameter has no default can never be run through the service (leaving it out is a 422 too,
luigi's ``MissingParameterException`` naming it)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.helpers.api_alone import api_alone
from tests.helpers.registries import closed_at_end
from tests.nectar.test_review16_luigi_cfg import post
from tests.nectar.test_review16_none_default import under_luigi
from tests.nectar.test_spare import ended

#: a task of luigi's documented kind: a private password, its user public; it notes the password it was given
CHAIN = """
import os

import luigi
from luigi.parameter import ParameterVisibility


class LoginTask(luigi.Task):
    user = luigi.Parameter()
    password = luigi.Parameter(visibility=ParameterVisibility.PRIVATE)

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW20_OUT"], f"login-{self.user}"))

    def run(self):
        with self.output().open("w") as out:
            out.write(self.password)
"""


@pytest.fixture
def api(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], tmp_path: Path) -> Iterator[int]:
    """The API alone under gunicorn against the session's luigid; its port."""
    write_chain("review20/login_chain", CHAIN)
    with api_alone(settings, luigid, tmp_path / "api-logs") as port:
        yield port


def test_a_private_parameter_is_given_over_the_api_as_on_luigis_command_line(
    api: int,
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``python -m luigi ... LoginTask --user ann --password s3cret`` runs it (checked first, against the same
    luigid); then the same values POSTed: a 202, the run DONE, the task given the password, and luigid shown no
    password (as luigi keeps a private parameter from it). Fails on main: the POST answers 422, ``password: unknown
    parameter (known: user)``."""
    monkeypatch.setenv("REVIEW20_OUT", str(tmp_path))
    chain = write_chain("review20/login_chain", CHAIN)
    said = under_luigi(chain, luigid, "LoginTask", {"user": "ann", "password": "s3cret"})
    assert (tmp_path / "login-ann").read_text() == "s3cret", said
    status, answer = post(api, "/api/chains/review20/login_chain/LoginTask", {"user": "bob", "password": "hunter2"})
    assert status == 202, answer
    start_worker(settings.replace(scheduler_url=luigid), workers=1)
    run = ended(closed_at_end(Nectar(settings)), answer["data"]["run_id"])
    assert run.state == RunState.DONE, run.error
    assert (tmp_path / "login-bob").read_text() == "hunter2"
    query = urllib.parse.quote(json.dumps({"search": "LoginTask"}))
    with urllib.request.urlopen(f"{luigid}/api/task_list?data={query}", timeout=60) as listed:
        shown = json.loads(listed.read())["response"]
    assert shown and all("password" not in task["params"] for task in shown.values()), shown


#: a task whose private parameter has a default: the default is a secret too
DEFAULTED = """
import os

import luigi
from luigi.parameter import ParameterVisibility


class TokenTask(luigi.Task):
    user = luigi.Parameter()
    token = luigi.Parameter(default="t0ps3cret", visibility=ParameterVisibility.PRIVATE)

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["REVIEW20_OUT"], f"token-{self.user}"))

    def run(self):
        with self.output().open("w") as out:
            out.write(self.token)
"""


def test_a_private_parameters_value_is_never_shown(
    api: int,
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The catalog lists the private parameter (so a client knows it may give it) marked private, its default
    not shown; the run's answers (``/api/runs/<id>``, ``/api/runs``) name its other parameters and not it, while
    its task was given it. Failed before the fix: the catalog did not list it (KeyError 'token'); with the private
    value kept for the run but shown, ``given-one`` was in ``/api/runs/<id>``."""
    monkeypatch.setenv("REVIEW20_OUT", str(tmp_path))
    write_chain("review20/token_chain", DEFAULTED)
    base = f"http://127.0.0.1:{api}"
    with urllib.request.urlopen(f"{base}/api/chains/review20/token_chain/TokenTask", timeout=60) as answer:
        listed = json.loads(answer.read())
    params = {param["name"]: param for param in listed["data"]["params"]}
    assert params["token"]["private"] is True and params["token"]["default"] is None, params
    assert params["user"]["private"] is False
    assert "t0ps3cret" not in json.dumps(listed)
    status, answer = post(api, "/api/chains/review20/token_chain/TokenTask", {"user": "cy", "token": "given-one"})
    assert status == 202, answer
    run_id = answer["data"]["run_id"]
    start_worker(settings.replace(scheduler_url=luigid), workers=1)
    run = ended(closed_at_end(Nectar(settings)), run_id)
    assert run.state == RunState.DONE, run.error
    assert (tmp_path / "token-cy").read_text() == "given-one"
    for path in (f"/api/runs/{run_id}", "/api/runs"):
        with urllib.request.urlopen(f"{base}{path}", timeout=60) as answer:
            text = answer.read().decode()
        assert "given-one" not in text and "(private)" not in text and '"cy"' in text, text
