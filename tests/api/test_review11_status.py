"""review11 (round 57): what a run's own page, the list of runs and its key's status say of a run whose output exists
(its attempt killed after the output's commit; a later run of its key made it): a run's page and the list say the
run's own state, its history; the key's status says the data's (DONE once out.txt exists)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

KILLED_CHAIN = """
import os
import signal

from nectar import NectarTask


class CommittedThenKilledTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")
        os.kill(os.getpid(), signal.SIGKILL)  # after the output's commit, before the run's end is recorded
"""


def test_a_requeued_run_whose_output_exists_reads_its_own_state_in_the_list_and_on_its_page_done_by_its_key(
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    retried = settings.replace(scheduler_url=luigid, retries=1, retry_delay=3600.0)  # requeued, not run again
    write_chain("review11/killed_chain", KILLED_CHAIN)
    nectar = closed_at_end(Nectar(retried))
    submission = nectar.submit("review11", "killed_chain", "CommittedThenKilledTask", {})
    assert submission.run is not None
    run_id, key = submission.run.id, submission.key
    start_worker(retried, workers=1)
    wait_until(lambda: (run := nectar.runs.get(run_id)) is not None and run.state == RunState.PENDING and run.error)
    assert nectar.store.exists(key)

    client = build_app(retried).test_client()
    own = client.get(f"/api/runs/{run_id}").get_json()["data"]["job_status"]
    status = client.get("/api/chainstatus", query_string={"chain": key.path}).get_json()["data"]["job_status"]
    listed = [run for run in client.get("/api/runs").get_json()["data"] if run["run_id"] == run_id]

    # the run's own page and the list say the run's state (its history); the key's status the data's
    assert ([run["job_status"] for run in listed], own, status) == (["PENDING"], "PENDING", "DONE")


GATED_CHAIN = """
import os

from nectar import NectarTask

GATE = {gate!r}


class GatedTask(NectarTask):
    def run(self):
        if not os.path.exists(GATE):
            raise RuntimeError("the gate is shut")
        with self.output().open("w") as out:
            out.write("made\\n")
"""


def test_a_failed_runs_own_page_says_it_failed_after_a_later_run_made_the_output(
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = settings.replace(scheduler_url=luigid, retries=0)
    gate = tmp_path / "gate"
    write_chain("review11/gated_chain", GATED_CHAIN.format(gate=str(gate)))
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=1)

    def ended(run_id: str) -> RunState:
        found = wait_until(lambda: (run := nectar.runs.get(run_id)) is not None and not run.state.active and run)
        assert isinstance(found, Run)
        return found.state

    first = nectar.submit("review11", "gated_chain", "GatedTask", {})
    assert first.run is not None and ended(first.run.id) == RunState.FAILED
    gate.touch()
    second = nectar.submit("review11", "gated_chain", "GatedTask", {})
    assert second.run is not None and ended(second.run.id) == RunState.DONE

    client = build_app(settings).test_client()
    pages = [client.get(f"/api/runs/{run.id}").get_json()["data"]["job_status"] for run in (first.run, second.run)]

    assert pages == ["FAILED", "DONE"]
