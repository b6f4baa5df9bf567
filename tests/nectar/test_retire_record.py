"""What a spare says of the run it just ended, through a real worker, in the JSON log format (review7, round 53)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.faults.conftest import alive
from tests.helpers.registries import closed_at_end
from tests.nectar import test_reuse
from tests.nectar.test_reuse import output, submit
from tests.nectar.test_spare import ended, pid_of

reusing = test_reuse.reusing
StartWorker = Callable[..., subprocess.Popen[bytes]]


def records(folder: Path) -> list[dict[str, object]]:
    """The JSON records of the workers' logs in ``folder`` (a line that is not one is skipped)."""
    found = []
    for log in folder.glob("worker-*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
    return found


def test_the_record_of_why_a_process_retires_after_its_run_names_that_run(
    reusing: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A run leaves a thread running: its process says, as it exits, that its run left it (nectar.reuse.left_behind),
    and that record names the run (``run_id``), the one place that ties the retirement to the run that caused it in
    the JSON logs: the run stays named until the process's put-back (a reset of its name as the attempt returned,
    tried in round 53 for records made in pytest's process after an in-process attempt, took it from this record)."""
    settings = reusing.replace(log_format="json")
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=1)

    run = ended(nectar, submit(nectar, "LeavesTask", n=1, leaves="thread"))
    try:
        assert run.state == RunState.DONE
        wait_until(lambda: not alive(pid_of(run)), timeout=60)
        said = f"attempt process {pid_of(run)} exits after 1 run(s): its run left the thread"
        exits = [record for record in records(tmp_path) if str(record.get("message", "")).startswith(said)]
        assert len(exits) == 1, records(tmp_path)
        assert exits[0]["run_id"] == run.id, exits[0]
    finally:
        left = int(output(nectar, run) or 0)
        if left:
            os.kill(left, signal.SIGKILL)
