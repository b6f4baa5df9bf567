"""Logs by key: the live file while a task runs, the stored copy once it ended, else 404; a status's log links
follow the step running before the requested task starts, and each step has its own."""

from __future__ import annotations

import html
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from nectar.config import Settings
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.registry import Step
from nectar.task import live_log_paths
from tests.api.conftest import finished
from tests.conftest import wait_until

KEY = TargetKey("testchains", "hello_luigiworld_chain", "TestS3Task", "b" * 32)


def logs(client: FlaskClient, stream: str, key: TargetKey = KEY) -> TestResponse:
    return client.get("/api/logs", query_string={"chain": key.path, "stream": stream})


@pytest.mark.parametrize(("stream", "index", "stored_name"), [("stdout", 0, STDOUT_FILE), ("stderr", 1, STDERR_FILE)])
def test_the_live_log_wins_over_the_stored_one(
    client: FlaskClient, settings: Settings, stream: str, index: int, stored_name: str
) -> None:
    stored = settings.local_targets_dir / KEY.with_file(stored_name).path
    stored.parent.mkdir(parents=True)
    stored.write_text(f"{stream} of the last run\n")
    answer = logs(client, stream)
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == f"{stream} of the last run\n"

    live = live_log_paths(KEY)[index]
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_text(f"{stream} of the run going on\n")
    assert logs(client, stream).get_data(as_text=True) == f"{stream} of the run going on\n"


def test_no_log_at_all_is_404(client: FlaskClient) -> None:
    answer = logs(client, "stdout")
    assert answer.status_code == 404 and "stdout" in answer.get_json()["message"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"chain": KEY.path, "stream": "stdlog"}, 422, "stream"),
        ({"stream": "stdout"}, 422, "chain"),
        ({"chain": "chains/x", "stream": "stdout"}, 400, None),
    ],
)
def test_bad_log_queries(client: FlaskClient, query: dict, status: int, field: str | None) -> None:
    answer = client.get("/api/logs", query_string=query)
    assert answer.status_code == status
    if field:
        assert field in answer.get_json()["errors"]


#: step 1 waits for a flag file the test creates; step 2 is the task requested
BLOCKING_CHAIN = """
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class UpstreamTask(NectarTask):
    flag = luigi.Parameter()

    def run(self):
        print("upstream is waiting for its flag", flush=True)
        while not Path(self.flag).exists():
            time.sleep(0.05)
        with self.output().open("w") as out:
            out.write("up\\n")


class DownstreamTask(NectarTask):
    flag = luigi.Parameter()

    def requires(self):
        return UpstreamTask(flag=self.flag)

    def run(self):
        print("downstream ran", flush=True)
        with self.output().open("w") as out:
            out.write("down\\n")
"""


def text_of(client: FlaskClient, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.get_json())
    return answer.get_data(as_text=True)


def test_while_an_upstream_step_runs_the_log_links_follow_it_and_each_step_has_its_own(
    client: FlaskClient,
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The requested task's logs 404ed while step 1 of its chain ran, though job_status said RUNNING."""
    write_chain("blocking/two_step_chain", BLOCKING_CHAIN)
    flag = tmp_path / "go"
    queued = client.post("/api/chains/blocking/two_step_chain/DownstreamTask", json={"flag": str(flag)})
    assert queued.status_code == 202, queued.get_json()
    data = queued.get_json()["data"]

    waiting = client.get(data["status_url"]).get_json()["data"]  # no worker yet: nothing has a log
    assert (waiting["stdout_url"], waiting["stderr_url"], waiting["logs_task"]) == (None, None, None)
    assert waiting["logs_note"] == "DownstreamTask has not started yet: it has no log"

    start_worker(settings)

    def upstream_running() -> dict | None:
        status = client.get(data["status_url"]).get_json()["data"]
        steps = {step["task"]: step for step in status["steps"]}
        running = steps.get("UpstreamTask", {}).get("state") == "RUNNING" and "DownstreamTask" in steps
        return status if running else None

    status = wait_until(upstream_running, timeout=60, interval=0.1)
    assert isinstance(status, dict) and status["job_status"] == "RUNNING", status
    steps = {step["task"]: step for step in status["steps"]}
    upstream, downstream = steps["UpstreamTask"], steps["DownstreamTask"]
    assert downstream["state"] == "PENDING"
    assert upstream["stdout_url"] == f"http://localhost/api/logs?chain={upstream['key']}&stream=stdout"
    assert upstream["stderr_url"] == f"http://localhost/api/logs?chain={upstream['key']}&stream=stderr"
    # not started: its own log is not there yet, so no link that would answer 404, and the note says so
    assert (downstream["stdout_url"], downstream["stderr_url"]) == (None, None)
    assert downstream["log_note"] == "DownstreamTask has not started: it has no log yet"
    assert (status["stdout_url"], status["stderr_url"]) == (upstream["stdout_url"], upstream["stderr_url"])
    assert status["logs_task"] == "UpstreamTask"
    note = "DownstreamTask has not started: these are the logs of UpstreamTask, the step running now"
    assert status["logs_note"] == note
    live = status["stdout_url"]  # the log appears once the step's process writes to it
    wait_until(lambda: "upstream is waiting for its flag" in client.get(live).get_data(as_text=True), timeout=60)

    run = client.get(f"/api/runs/{data['run_id']}").get_json()["data"]
    assert {step["task"]: step["stdout_url"] for step in run["steps"]} == {
        "UpstreamTask": upstream["stdout_url"],
        "DownstreamTask": downstream["stdout_url"],
    }
    assert (run["stdout_url"], run["logs_task"], run["logs_note"]) == (
        status["stdout_url"],
        "UpstreamTask",
        status["logs_note"],
    )

    page = html.unescape(client.get(f"/ui/runs/{data['run_id']}").get_data(as_text=True))
    assert f'id="stdout-link" href="{upstream["stdout_url"]}"' in page
    assert "these are the logs of UpstreamTask" in page

    flag.touch()
    done = finished(client, data["status_url"])
    assert done["job_status"] == "DONE", done
    assert (done["logs_task"], done["logs_note"]) == ("DownstreamTask", None)
    assert done["stdout_url"] == f"http://localhost/api/logs?chain={done['key']}&stream=stdout"
    assert "downstream ran" in text_of(client, done["stdout_url"])
    upstream_done = next(step for step in done["steps"] if step["task"] == "UpstreamTask")
    assert "upstream is waiting for its flag" in text_of(client, upstream_done["stdout_url"])


def test_when_an_upstream_step_failed_the_log_links_are_its_own(
    client: FlaskClient, tmp_path: Path, write_chain: Callable[[str, str], Path]
) -> None:
    """Recorded through the registry as a worker would: step 1 failed, the requested task never ran."""
    write_chain("blocking/two_step_chain", BLOCKING_CHAIN)
    queued = client.post("/api/chains/blocking/two_step_chain/DownstreamTask", json={"flag": str(tmp_path / "go")})
    data = queued.get_json()["data"]
    nectar = client.application.extensions["nectar"]
    run = nectar.runs.claim("test:1", data["run_id"])
    upstream_key = data["key"].replace("DownstreamTask", "UpstreamTask")  # the same parameters, so the same md5
    nectar.runs.record_steps(
        [
            Step(run.id, "Upstream_x", "UpstreamTask", upstream_key, "FAILED", True, "RuntimeError: broken"),
            Step(run.id, run.task_id, "DownstreamTask", data["key"], "PENDING"),
        ]
    )
    nectar.runs.fail(run.id, run.attempt, "UpstreamTask", "RuntimeError: broken")
    for name in (STDOUT_FILE, STDERR_FILE):  # the logs its worker stored
        nectar.store.write_text(TargetKey.parse(upstream_key).with_file(name), "upstream failed\n")

    for answer in (client.get(data["status_url"]), client.get(f"/api/runs/{run.id}")):
        shown = answer.get_json()["data"]
        assert shown["job_status"] == "FAILED"
        assert shown["stdout_url"] == f"http://localhost/api/logs?chain={upstream_key}&stream=stdout"
        assert shown["logs_task"] == "UpstreamTask"
        note = "DownstreamTask did not run: these are the logs of UpstreamTask, the step that failed"
        assert shown["logs_note"] == note
