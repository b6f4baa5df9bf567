"""review21 (on main): luigi's ``Task.disabled`` (a class attribute: "if true, the task will not run", luigi's docs).
``python -m luigi`` schedules no such task ("Did not schedule any tasks") and leaves a task that requires one pending,
"not granted run permission by the scheduler", and says so in its summary. Through the service the disabled task's
run is retried as if it had failed ("not complete after the run:" and luigi's summary, attempt after attempt, then
FAILED with that text: the word disabled nowhere), and a run of a task requiring it goes back to the queue "waiting:
luigid did not grant it (paused, short of resources, or restarted)", for 10 minutes before it fails: neither names
the cause, a class attribute of the chain, which no wait or retry changes (README, *What happens when something
fails*: what no retry can cure ends the run at once, named for what it is)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from tests.conftest import wait_until

CHAIN = '''
"""A task luigi will not run, and one that requires it."""

import luigi


class DisabledTask(luigi.Task):
    disabled = True

    def output(self):
        return luigi.LocalTarget({out!r} + "/disabled.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("ran\\n")


class NeedsDisabledTask(luigi.Task):
    def requires(self):
        return DisabledTask()

    def output(self):
        return luigi.LocalTarget({out!r} + "/needs.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("ran\\n")
'''


def status_of(client: FlaskClient, url: str) -> dict[str, Any]:
    data = client.get(url).get_json()["data"]
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("task", ["DisabledTask", "NeedsDisabledTask"])
def test_a_disabled_task_ends_its_run_at_once_naming_it(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    task: str,
) -> None:
    """The run (retries allowed) must end FAILED in its first attempt naming ``DisabledTask`` as disabled. Fails on
    main: ``DisabledTask``'s run is at attempt 2, "not complete after the run: ===== Luigi Execution Summary =====
    ... Did not schedule any tasks"; ``NeedsDisabledTask``'s is PENDING, "waiting: luigid did not grant it (paused,
    short of resources, or restarted)"."""
    write_chain("plain/disabled_chain", CHAIN.format(out=str(tmp_path / "out")))
    client = client_for(settings.replace(retries=2))
    answer = client.post(f"/api/chains/plain/disabled_chain/{task}", json={})
    assert answer.status_code == 202, answer.get_json()
    url = answer.get_json()["data"]["status_url"]
    start_worker(settings.replace(retries=2), workers=1)

    def over_or_again() -> dict[str, Any] | None:
        status = status_of(client, url)
        again = status["attempt"] > 1 or (status["error"] or "").startswith("waiting:")
        return status if status["job_status"] in {"DONE", "FAILED"} or again else None

    status = wait_until(over_or_again)
    assert (status["job_status"], status["attempt"]) == ("FAILED", 1), status
    assert "DisabledTask" in status["error"] and "disabled" in status["error"], status
