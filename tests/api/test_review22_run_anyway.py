"""review22 (on main): luigi's ``luigi.contrib.simulate.RunAnywayTarget`` ("a target that never exists before the
task runs": a task that must run at every run of a pipeline) runs once in ``nectar serve``'s worker, and never again.
The target's file is ``<tmp>/luigi-simulate/<unique>/<md5 of the task id>``, ``unique`` a ``multiprocessing.Value``
that luigi makes as the module is imported and sets to the pid of the first process that makes such a target: one
per ``python -m luigi``. ``nectar worker --clock`` (serve's) executes every chain before it forks, so the Value is in
memory every attempt process shares: the first attempt sets it for good, and each later run of the task finds its
file there, ``complete()`` true, and ends DONE without calling ``run()``, while the API (a process of its own) answered
its submission ``202 queued``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from tests.conftest import wait_until

CHAIN = '''
"""A task luigi runs at every run of the pipeline."""

import luigi
from luigi.contrib.simulate import RunAnywayTarget


class AnywayTask(luigi.Task):
    def output(self):
        return RunAnywayTarget(self)

    def run(self):
        with open({counter!r}, "a") as counter:
            counter.write("ran\\n")
        self.output().done()
'''


def test_a_run_anyway_task_runs_at_each_submission(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    processes: Processes,
) -> None:
    """Two submissions, one after the other's end: ``run()`` must be called twice, as two ``python -m luigi`` call
    it. Fails on main: the second run is DONE and ``run()`` was called once (``['ran']``)."""
    counter = tmp_path / "counter.txt"
    write_chain("plain/anyway_chain", CHAIN.format(counter=str(counter)))
    env = base_env() | settings_env(settings)
    worker = processes.start("worker", [*NECTAR, "worker", "--clock", "--workers", "1"], env, tmp_path)
    client = client_for(settings)

    def submitted_to_its_end() -> dict[str, Any]:
        answer = client.post("/api/chains/plain/anyway_chain/AnywayTask", json={})
        assert answer.status_code == 202, answer.get_json()
        url = answer.get_json()["data"]["status_url"]

        def over() -> dict[str, Any] | None:
            assert worker.poll() is None, processes.log_of[worker.pid].read_text()
            status = client.get(url).get_json()["data"]
            return status if status["job_status"] in {"DONE", "FAILED"} else None

        return wait_until(over)

    first = submitted_to_its_end()
    assert first["job_status"] == "DONE", first
    second = submitted_to_its_end()
    assert second["job_status"] == "DONE", second
    assert second["run_id"] != first["run_id"]
    assert counter.read_text().split() == ["ran", "ran"]
