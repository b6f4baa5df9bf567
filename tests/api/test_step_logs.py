"""Log links only where a log can be served: a step done before its run links its stored log or none, with why."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry import Step
from nectar.registry.sqlite import SQLiteRunStore
from nectar.steps import StepRecorder
from nectar.task import live_log_paths
from tests.api.conftest import finished
from tests.helpers.registries import closed_at_end

CHAIN = "/api/chains/steplogs/done_before_chain"
SOURCE = (
    "import luigi\n"
    "from nectar import NectarTask\n"
    "class UpstreamTask(NectarTask):\n"
    "    def run(self):\n"
    "        print('upstream ran')\n"
    "        with self.output().open('w') as out:\n"
    "            out.write('up\\n')\n"
    "class DownstreamTask(NectarTask):\n"
    "    def requires(self):\n"
    "        return UpstreamTask()\n"
    "    def run(self):\n"
    "        print('downstream ran')\n"
    "        with self.output().open('w') as out:\n"
    "            out.write('down\\n')\n"
)


def _upstream_step(status: dict) -> dict:
    return next(step for step in status["steps"] if step["task"] == "UpstreamTask")


def test_a_step_done_before_the_run_without_a_log_gets_no_log_links_but_a_note(
    client: FlaskClient,
    settings: Settings,
    write_chain: Callable[[str, str], object],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_chain("steplogs/done_before_chain", SOURCE)
    nectar = client.application.extensions["nectar"]
    upstream = nectar.catalog.known_task("steplogs", "done_before_chain", "UpstreamTask").cls()
    nectar.store.write_text(upstream.target_key, "made by hand\n")  # done before any run: it left no log
    queued = client.post(f"{CHAIN}/DownstreamTask").get_json()["data"]
    start_worker(settings)

    status = finished(client, queued["status_url"])  # the client fetches every link handed out: each answers 200

    assert status["job_status"] == "DONE", status
    step = _upstream_step(status)
    assert (step["executed"], step["state"]) == (False, "DONE"), step
    assert (step["stdout_url"], step["stderr_url"]) == (None, None), step
    assert step["log_note"] == "UpstreamTask was done before this run; it left no log here"
    assert "downstream ran" in client.get(status["stdout_url"]).get_data(as_text=True)
    upstream_status = client.get(f"/api/chainstatus?chain={upstream.target_key.path}").get_json()["data"]
    assert upstream_status["stdout_url"] is None, upstream_status
    assert upstream_status["logs_note"] == "UpstreamTask was not run by this service: it left no log here"


def test_a_step_done_by_an_earlier_run_links_the_log_that_run_stored(
    client: FlaskClient,
    settings: Settings,
    write_chain: Callable[[str, str], object],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_chain("steplogs/done_before_chain", SOURCE)
    earlier = client.post(f"{CHAIN}/UpstreamTask").get_json()["data"]
    start_worker(settings)
    assert finished(client, earlier["status_url"])["job_status"] == "DONE"

    status = finished(client, client.post(f"{CHAIN}/DownstreamTask").get_json()["data"]["status_url"])

    step = _upstream_step(status)
    assert (step["executed"], step["log_note"]) == (False, None), step
    assert "upstream ran" in client.get(step["stdout_url"]).get_data(as_text=True)


class WatchedRuns(SQLiteRunStore):
    """The real registry, noting whether the watched live log existed when each RUNNING step was written."""

    def __init__(self, path: Path, watched: Path) -> None:
        super().__init__(path)
        self.watched, self.seen = watched, list[bool]()

    def record_steps(self, steps: Sequence[Step], attempt: int | None = None) -> bool:
        self.seen += [self.watched.exists() for step in steps if step.state == "RUNNING"]
        return True


def test_a_step_is_told_running_only_once_its_live_log_exists(
    client: FlaskClient, tmp_path: Path, write_chain: Callable[[str, str], object]
) -> None:
    """luigi's START event comes before the task's run() opens its logs: the step's log URLs answer from then on."""
    write_chain("steplogs/done_before_chain", SOURCE)
    task = client.application.extensions["nectar"].catalog.known_task("steplogs", "done_before_chain", "UpstreamTask")
    upstream = task.cls()
    stdout, stderr = live_log_paths(upstream.target_key)
    runs = closed_at_end(WatchedRuns(tmp_path / "watched.db", stdout))

    StepRecorder(runs, "run-1").start(upstream)

    assert runs.seen == [True]
    assert stderr.exists()
