"""review21 (on main): an upgrade with runs in flight (README *Deploying*, "Upgrading": restart to run new code), where
the new code renamed a task's parameter. A run queued under the old code keeps its parameters' text; its attempt makes
the task with luigi's ``from_str_params``, which takes the names the class has now and passes over the others: the
renamed one's value is dropped without a word and the task runs on the new parameter's default. The run ends DONE
under its old key (the md5 of the old parameters), the output is made under another key (the new default's), and
the run's status reads ``MISSING`` ("its output ... no longer exists"), an output that never was. ``python -m luigi``
given the old command line on the new code refuses it (``UnknownParameterException``), and the API refuses such a
submission (422 naming it): the queued run should fail the same way, naming the parameter."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.conftest import wait_until

OLD = '''
"""Counts to n."""

import luigi
from nectar import NectarTask


class CountTask(NectarTask):
    n = luigi.IntParameter(default=1)

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.n}\\n")
'''

#: the new release: ``n`` is now ``count``
NEW = OLD.replace("n = luigi.IntParameter", "count = luigi.IntParameter").replace("self.n}", "self.count}")


def test_a_run_queued_before_an_upgrade_renaming_its_parameter_fails_naming_it(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Queued with ``n=7`` (no worker yet: the old release stopped), the file saved as the new release has it, a
    worker started. Fails on main: the run DONE, its status MISSING, ``out.txt`` made under the key of ``count=1``
    holding ``1``."""
    write_chain("up/count_chain", OLD)
    client = client_for(settings)
    answer = client.post("/api/chains/up/count_chain/CountTask", json={"n": 7})
    assert answer.status_code == 202, answer.get_json()
    queued = answer.get_json()["data"]
    write_chain("up/count_chain", NEW)
    refused = client.post("/api/chains/up/count_chain/CountTask", json={"n": 8})
    assert refused.status_code == 422 and "n" in refused.get_json()["errors"], refused.get_json()  # the new code's

    start_worker(settings, workers=1)
    status = wait_until(lambda: ended(client, queued["status_url"]))
    assert status["job_status"] == "FAILED", status
    assert re.search(r"\bn\b", status["error"]), status  # the parameter the new code no longer has


def ended(client: FlaskClient, status_url: str) -> dict | None:
    """The status once its run ended (MISSING too: an ended run whose output is not there)."""
    data = client.get(status_url).get_json()["data"]
    return data if data["job_status"] in {"DONE", "FAILED", "MISSING"} else None
