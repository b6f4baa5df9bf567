"""luigi's per-task retry policy through the real service: the API, ``nectar worker`` processes and luigid.

A task with ``retry_count = 2`` is run twice, then luigid disables it; a new POST of it runs it again
(the user asked again) instead of waiting for luigid for good; a FAILED run lists no step RUNNING.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nectar.config import Settings
from tests.api.conftest import build_app, finished
from tests.conftest import wait_until

StartWorker = Callable[..., subprocess.Popen[bytes]]

# per_task_retry_policy's shape: a wrapper over a step with its own retry_count that always fails
RETRY_POLICY_CHAIN = """import luigi


class AlwaysFailingStepTask(luigi.Task):
    retry_count = 2
    counter = luigi.Parameter()

    def run(self):
        with open(self.counter, "a") as out:
            out.write("ran\\n")
        raise RuntimeError("this step always fails")


class RetryPolicyTask(luigi.Task):
    retry_count = 2
    counter = luigi.Parameter()

    def requires(self):
        return AlwaysFailingStepTask(counter=self.counter)

    def run(self):
        pass
"""


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_task_luigid_disabled_is_run_again_when_posted_again(
    settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], start_worker: StartWorker, tmp_path: Path
) -> None:
    settings = settings.replace(scheduler_url=luigid, retry_delay=0.0)
    write_chain("examples/retry_policy_chain", RETRY_POLICY_CHAIN)
    client = build_app(settings).test_client()
    counter = tmp_path / "failures.txt"
    url = "/api/chains/examples/retry_policy_chain/RetryPolicyTask"
    start_worker(settings)

    def failed_run() -> dict[str, Any]:
        answer = client.post(url, json={"counter": str(counter)})
        assert answer.status_code == 202, answer.get_json()
        status = finished(client, answer.get_json()["data"]["status_url"])
        assert status["job_status"] == "FAILED", status
        return status

    first = failed_run()
    assert (first["attempt"], first["max_attempts"], first["failed_step"]) == (2, 2, "AlwaysFailingStepTask")
    assert "RuntimeError: this step always fails" in first["error"]
    assert not [step for step in first["steps"] if step["state"] == "RUNNING"], first["steps"]
    assert lines(counter) == 2
    second = failed_run()  # luigid disabled the step after its 2 failures: the new POST re-enables it
    assert second["run_id"] != first["run_id"]
    assert "RuntimeError: this step always fails" in second["error"], second
    wait_until(lambda: lines(counter) == 4, timeout=60)
