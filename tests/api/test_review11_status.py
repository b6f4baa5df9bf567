"""review11 (round 57): what a run's own page, the list of runs and its key's status say of a run whose output exists
(its attempt killed after the output's commit; a later run of its key made it): a run's page and the list say the
run's own state, its history; the key's status says the data's (DONE once out.txt exists)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RunState
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_status import KILLED_CHAIN


def submitted(nectar: Nectar, chain: str, task: str, state: RunState) -> tuple[str, TargetKey]:
    """A run of ``task`` submitted, once its state is ``state`` after an attempt (started: its first one counted):
    its id and its key."""
    submission = nectar.submit("review11", chain, task, {})
    assert submission.run is not None
    run_id = submission.run.id
    wait_until(lambda: (run := nectar.runs.get(run_id)) is not None and run.state == state and run.attempt >= 1)
    return run_id, submission.key


def test_a_requeued_run_whose_output_exists_reads_its_own_state_in_the_list_and_on_its_page_done_by_its_key(
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    retried = settings.replace(scheduler_url=luigid, retries=1, retry_delay=3600.0)  # requeued, not run again
    write_chain("review11/killed_chain", KILLED_CHAIN)  # the status helper's: killed -9 after its output's commit
    nectar = closed_at_end(Nectar(retried))
    start_worker(retried, workers=1)
    run_id, key = submitted(nectar, "killed_chain", "CommittedThenKilledTask", RunState.PENDING)
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

    first, _ = submitted(nectar, "gated_chain", "GatedTask", RunState.FAILED)
    gate.touch()
    second, _ = submitted(nectar, "gated_chain", "GatedTask", RunState.DONE)

    client = build_app(settings).test_client()
    pages = [client.get(f"/api/runs/{run_id}").get_json()["data"]["job_status"] for run_id in (first, second)]

    assert pages == ["FAILED", "DONE"]
