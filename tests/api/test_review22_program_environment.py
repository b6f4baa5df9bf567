"""review22 (on main): a failed ``luigi.contrib.external_program.ExternalProgramTask`` (luigi's way to run a command,
``ExternalProgramRunError``) hands the worker's whole environment to anyone who may read a status. luigi's error
text carries ``ENVIRONMENT: NAME='value' ...``, every variable of the process that ran the program
(``program_environment()`` is ``os.environ`` by default); the service keeps that text as the run's and the step's
``error``, in ``/api/chainstatus``, ``/api/runs/<id>`` and the web UI. Under ``python -m luigi`` it is the user's
own environment printed to the user's own terminal; under the service it is the operator's: ``NECTAR_SCHEDULER_SECRET``
(luigid's guard), ``NECTAR_SECRET_KEY`` (which signs download links), ``AWS_SECRET_ACCESS_KEY``, a PostgreSQL URL
with its password, all set by environment as README's *Configuration* says, read by any holder of a ``read`` token.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from tests.conftest import wait_until

CHAIN = '''
"""A command that fails, as luigi's ExternalProgramTask runs it."""

import luigi
from luigi.contrib.external_program import ExternalProgramTask


class FailingProgramTask(ExternalProgramTask):
    def program_args(self):
        return ["sh", "-c", "echo to-stderr >&2; exit 3"]

    def output(self):
        return luigi.LocalTarget({out!r} + "/program.txt")
'''

#: a value only the worker's environment holds, in a variable the service reads as a secret (README, Configuration)
SECRET = "review22-scheduler-secret-0123456789abcdef"


def test_a_failed_program_status_names_the_failure_not_the_workers_secrets(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run must end FAILED naming the program's failure (its return code), and no answer about it may hold a
    value of the worker's secret variables. Fails on main: the status's ``error`` (and the step's, and the run's)
    ends in ``ENVIRONMENT: ... NECTAR_SCHEDULER_SECRET='review22-scheduler-secret-...'``."""
    write_chain("plain/program_chain", CHAIN.format(out=str(tmp_path / "out")))
    client = client_for(settings)
    answer = client.post("/api/chains/plain/program_chain/FailingProgramTask", json={})
    assert answer.status_code == 202, answer.get_json()
    url = answer.get_json()["data"]["status_url"]
    run_id = answer.get_json()["data"]["run_id"]
    # the worker's environment alone holds it (the process copies os.environ as it starts); the API in this process
    # never reads it
    monkeypatch.setenv("NECTAR_SCHEDULER_SECRET", SECRET)
    start_worker(settings, workers=1)
    monkeypatch.delenv("NECTAR_SCHEDULER_SECRET")

    def over() -> dict[str, Any] | None:
        status = client.get(url).get_json()["data"]
        return status if status["job_status"] in {"DONE", "FAILED"} else None

    status = wait_until(over)
    assert status["job_status"] == "FAILED", status
    assert "return code=3" in status["error"], status["error"]
    answers = {
        "chainstatus": json.dumps(client.get(url).get_json()),
        "run": json.dumps(client.get(f"/api/runs/{run_id}").get_json()),
    }
    leaked = [name for name, text in answers.items() if SECRET in text]
    assert not leaked, f"the worker's NECTAR_SCHEDULER_SECRET is in {leaked}: {status['error'][-400:]}"
