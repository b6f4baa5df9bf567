"""A real ``nectar serve`` fires schedules: one declared in a chain file, one made on its registry by another
process, one added to the file while it runs; stopped, it leaves no process behind."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import Processes, alive, base_env, cmdline, descendants, settings_env, waitfor
from nectar.config import Settings
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end

BEAT_CHAIN = '''
import luigi
from nectar import NectarTask, Schedule


class BeatTask(NectarTask):
    """Writes the fire time it was made for, and who made it."""

    schedules = [{schedules}]
    when = luigi.DateSecondParameter()
    label = luigi.Parameter(default="file")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{{self.label}} {{self.when.isoformat()}}+00:00")
'''
EVERY_SECOND = 'Schedule(interval_s=1, fire_time_param="when", name="every_second")'
ADDED = 'Schedule(interval_s=1, fire_time_param="when", params={"label": "added"}, name="added")'
TASK = "daily/beat_chain/BeatTask"
#: how long a wait may take before the test fails as hung (never a bound on how fast anything is)
PATIENCE = 120.0


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    api: str
    settings: Settings
    processes: Processes

    def executed_run(self, schedule_id: str, what: str) -> dict[str, Any]:
        """Until ``GET /api/runs`` lists a run of ``schedule_id`` that is DONE; that run."""

        def done() -> dict[str, Any] | None:
            if self.proc.poll() is not None:  # not an AssertionError: waitfor would take it for "not yet"
                raise RuntimeError(f"nectar serve exited with code {self.proc.returncode}")
            answer = requests.get(f"{self.api}/api/runs", params={"task": "BeatTask", "page_size": "500"}, timeout=60)
            listed = answer.json()["data"] if answer.status_code == 200 else []
            unnamed = [run for run in listed if not {"schedule_id", "fire_time"} <= set(run)]
            if unnamed:
                raise LookupError(f"GET /api/runs names no schedule_id or fire_time: {unnamed[0]}")
            runs = [run for run in listed if run["schedule_id"] == schedule_id]
            return next((run for run in runs if run["job_status"] == "DONE"), None)

        try:
            return waitfor(done, PATIENCE, what, interval=0.2)
        except (AssertionError, RuntimeError, LookupError):
            self.processes.dump_logs()
            raise

    def output(self, run: dict[str, Any]) -> str:
        """What the run's task wrote: its label and the fire time it was given."""
        return (self.settings.local_targets_dir / run["key"]).read_text()


@pytest.fixture
def served(
    settings: Settings, write_chain: Callable[[str, str], Path], processes: Processes, tmp_path: Path
) -> Iterator[Served]:
    """``nectar serve`` on free ports, on the test's chains, data and targets folders, the Beat chain declaring
    one schedule firing every second."""
    write_chain("daily/beat_chain", BEAT_CHAIN.format(schedules=EVERY_SECOND))
    env = {**base_env(), **settings_env(settings), "NECTAR_WORKERS": "2", "NECTAR_API_WORKERS": "1"}
    serve = processes.nectar_serve(env, tmp_path, timeout=PATIENCE)  # on free ports, others if one was taken
    yield Served(serve.proc, f"http://127.0.0.1:{serve.port}", settings, processes)


def test_serve_fires_schedules_from_the_file_from_the_registry_and_added_to_the_file_then_stops_clean(
    served: Served, write_chain: Callable[[str, str], Path]
) -> None:
    declared = served.executed_run("daily.beat_chain.BeatTask.every_second", "a run of the file's schedule")
    assert served.output(declared) == f"file {declared['fire_time']}"

    made = closed_at_end(Nectar(served.settings)).schedules.create(
        {"task": TASK, "interval_s": 1, "fire_time_param": "when", "params": {"label": "api"}}
    )
    assert made.source == "api"
    by_api = served.executed_run(made.id, "a run of the schedule made on the registry while serve runs")
    assert served.output(by_api) == f"api {by_api['fire_time']}"

    write_chain("daily/beat_chain", BEAT_CHAIN.format(schedules=f"{EVERY_SECOND}, {ADDED}"))
    added = served.executed_run("daily.beat_chain.BeatTask.added", "a run of the schedule added to the file")
    assert served.output(added) == f"added {added['fire_time']}"

    parts = {pid: cmdline(pid) for pid in descendants(served.proc.pid)}
    # the clock is a part of the workers' process, not a process of its own (one process fewer when idle)
    assert any("nectar.cli worker --clock" in line for line in parts.values()), parts
    assert not any("nectar.cli clock" in line for line in parts.values()), parts
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=PATIENCE) == 0
    waitfor(lambda: not any(alive(pid) for pid in parts), PATIENCE, f"every part of nectar serve to stop: {parts}")
    log = served.processes.log_of[served.proc.pid].read_text()
    assert "did not stop" not in log, log
