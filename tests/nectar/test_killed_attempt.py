"""An attempt's process killed by no one the service knows (the OOM killer, an operator's kill -9) is said at WARNING,
with its run, attempt, pid and signal, besides failing (or retrying) its run; the run keeps it in its attempts' history,
while the step that succeeded on the retry shows no error."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_leases import WAITING_CHAIN


def retried_run(
    settings: Settings,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    chain: tuple[str, str, str],
    params: dict[str, str],
) -> tuple[Nectar, str, Callable[[], Run]]:
    """A run of ``chain`` (type, chain, task) with ``params``, retried once at once, executed by one worker: the
    service, the run's id, and what reads the run now."""
    retried = settings.replace(retries=1, retry_delay=0.0)
    nectar = closed_at_end(Nectar(retried))
    start_worker(retried, workers=1)
    submitted = nectar.submit(*chain, params)
    assert submitted.run is not None
    run_id = submitted.run.id

    def current() -> Run:
        run = nectar.runs.get(run_id)
        assert run is not None
        return run

    return nectar, run_id, current


def test_a_killed_attempt_is_logged_at_warning_and_kept_in_the_runs_attempts_not_on_its_step(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    write_chain("waits/wait_chain", WAITING_CHAIN)
    flag = tmp_path / "flag"
    nectar, run_id, current = retried_run(
        settings, start_worker, ("waits", "wait_chain", "WaitTask"), {"flag": str(flag)}
    )
    wait_until(lambda: current().state == RunState.RUNNING and Path(f"{flag}.pid").exists(), timeout=60)
    worker = current().worker
    assert worker is not None
    pid = int(worker.rsplit(":", 1)[1])
    sleeper = int(Path(f"{flag}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    try:
        os.kill(sleeper, signal.SIGKILL)  # the task's own child, left behind by the kill -9 as a crash would leave it
    except ProcessLookupError:
        pass
    flag.touch()  # attempt 2 may finish
    wait_until(lambda: not current().state.active, timeout=60)
    assert (current().state, current().attempt) == (RunState.DONE, 2)
    said = [line for log in tmp_path.glob("worker-*.log") for line in log.read_text().splitlines() if run_id in line]
    warned = [line for line in said if "WARNING" in line and "killed by signal 9" in line]
    assert len(warned) == 1, said
    assert f"attempt 1's process {pid} killed by signal 9; it will be retried" in warned[0]

    # the history is the run's, per attempt; each step shows its current attempt's state, without attempt 1's error
    killed = "worker process killed by signal 9 during attempt 1"
    steps = nectar.runs.steps(run_id)
    assert [(step.state, step.error) for step in steps] == [("DONE", None)], steps
    client = build_app(nectar.settings).test_client()
    detail = client.get(f"/api/runs/{run_id}").get_json()["data"]
    assert [(step["state"], step["error"]) for step in detail["steps"]] == [("DONE", None)]
    attempts = [(a["attempt"], a["state"], a["failed_step"], a["error"]) for a in detail["attempts"]]
    assert attempts == [(1, "FAILED", "WaitTask", killed), (2, "DONE", None, None)]
    assert all(a["ended_at"] >= a["started_at"] for a in detail["attempts"])
    status = client.get("/api/chainstatus", query_string={"chain": current().key}).get_json()["data"]
    assert [step["error"] for step in status["steps"]] == [None], status
    page = client.get(f"/ui/runs/{run_id}").get_data(as_text=True)
    assert 'id="attempts"' in page and killed in page
