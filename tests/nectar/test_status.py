"""job_status of a key, as a client polling it sees it: registry first, then the store, then luigid."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import luigi
import pytest

from harness import settings_env
from nectar.cli import main
from nectar.config import Settings
from nectar.errors import RunNotFound
from nectar.keys import TargetKey
from nectar.registry import RunState
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

StartWorker = Callable[..., subprocess.Popen[bytes]]
WriteChain = Callable[[str, str], Path]

GATED_CHAIN = """
import time
from pathlib import Path

import luigi

from nectar import NectarTask


class GatedTask(NectarTask):
    gate = luigi.Parameter()  # a file the test creates to let the task end
    fail = luigi.BoolParameter(default=False)

    def run(self):
        while not Path(self.gate).exists():
            time.sleep(0.02)
        if self.fail:
            raise RuntimeError("woke up broken")
        with self.output().open("w") as out:
            out.write("rested\\n")
"""


def poll_states(nectar: Nectar, key: TargetKey, gate: Path, timeout: float = 60) -> list[str]:
    """Every job_status a tight poller sees, in order and without repeats, until the run is over; the task is let
    end (``gate`` created) only once RUNNING was seen."""
    seen: list[str] = []

    def over() -> bool:
        state = nectar.status(key).job_status
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "RUNNING":
            gate.touch()
        return state in {"DONE", "FAILED"}

    try:
        wait_until(over, timeout=timeout, interval=0.02)
    except AssertionError:
        raise AssertionError(f"the run never ended; job_status seen: {seen}") from None
    return seen


@pytest.mark.parametrize(("fail", "end"), [(False, "DONE"), (True, "FAILED")])
def test_a_poller_sees_pending_running_then_the_end(
    settings: Settings,
    luigid: str,
    write_chain: WriteChain,
    start_worker: StartWorker,
    tmp_path: Path,
    fail: bool,
    end: str,
) -> None:
    settings = settings.replace(scheduler_url=luigid)
    write_chain("poll/gated_chain", GATED_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    gate = tmp_path / "gate"
    submission = nectar.submit("poll", "gated_chain", "GatedTask", {"gate": str(gate), "fail": fail})
    assert nectar.status(submission.key).job_status == "PENDING"
    start_worker(settings, workers=1)

    assert poll_states(nectar, submission.key, gate) == ["PENDING", "RUNNING", end]

    status = nectar.status(submission.key)
    assert status.run is not None and status.run.state == end
    assert (status.failed_step, status.error) == (
        ("GatedTask", "RuntimeError: woke up broken") if fail else (None, None)
    )


@pytest.mark.parametrize(
    "key",
    [
        "chains/etl/sales_chain/AggregateSalesTask/0123456789abcdef0123456789abcdef/out.txt",
        "chains/gone/gone_chain/GoneTask/0123456789abcdef0123456789abcdef/out.txt",
    ],
    ids=["known-task", "unknown-chain"],
)
def test_unknown_key_is_run_not_found(settings: Settings, key: str) -> None:
    with pytest.raises(RunNotFound, match="no run and no target"):
        closed_at_end(Nectar(settings)).status(TargetKey.parse(key))


def test_an_output_made_outside_the_registry_is_done(settings: Settings) -> None:
    nectar = closed_at_end(Nectar(settings))
    info = nectar.catalog.task("testchains", "hello_luigiworld_chain", "TestS3Task")
    key = info.key_of(info.instantiate({}))
    nectar.store.write_text(key, "made by hand\n")

    status = nectar.status(key.with_file("log/stdout.log"))  # any file of the folder names the task

    assert (status.job_status, status.run, status.key) == ("DONE", None, key)


BROKEN_CHAIN = """
from nectar import NectarTask


class OutsiderTask(NectarTask):
    def run(self):
        raise RuntimeError("run by plain luigi")
"""


def test_a_task_run_outside_the_registry_is_answered_by_luigid(
    settings: Settings, luigid: str, write_chain: WriteChain
) -> None:
    write_chain("poll/outsider_chain", BROKEN_CHAIN)
    without_luigid = closed_at_end(Nectar(settings))
    info = without_luigid.catalog.task("poll", "outsider_chain", "OutsiderTask")
    task = info.instantiate({})

    assert luigi.build([task], scheduler_url=luigid, workers=1) is False

    key = info.key_of(task)
    assert closed_at_end(Nectar(settings.replace(scheduler_url=luigid))).status(key).job_status == "FAILED"
    unknown = without_luigid.status(key)
    assert unknown.job_status == "UNKNOWN" and "scheduler does not know it" in str(unknown.error)


KILLED_CHAIN = """
import os
import signal

from nectar import NectarTask


class CommittedThenKilledTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")
        # after the output's commit, before luigi records the step DONE and the attempt its run's end: kill -9
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(("retries", "state"), [(1, RunState.PENDING), (0, RunState.FAILED)])
def test_a_run_killed_after_its_output_was_committed_is_done_by_its_key_its_page_saying_its_own_state(
    settings: Settings,
    luigid: str,
    write_chain: WriteChain,
    start_worker: StartWorker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    retries: int,
    state: RunState,
) -> None:
    # requeued, its retry an hour away (the run stays queued, as it would behind a deep queue, until the test has
    # looked), or failed (no retry left)
    retried = settings.replace(scheduler_url=luigid, retries=retries, retry_delay=3600.0)
    write_chain("poll/killed_chain", KILLED_CHAIN)
    nectar = closed_at_end(Nectar(retried))
    submission = nectar.submit("poll", "killed_chain", "CommittedThenKilledTask", {})
    assert submission.run is not None
    run_id, key = submission.run.id, submission.key
    start_worker(retried, workers=1)

    def ended_its_attempt() -> bool:
        run = nectar.runs.get(run_id)
        return run is not None and run.state == state and "killed by signal 9" in str(run.error)

    wait_until(ended_its_attempt, timeout=60)
    assert nectar.store.exists(key)  # the output was committed before the kill

    status = nectar.status(key)
    assert (status.job_status, status.run and status.run.state) == ("DONE", state)
    client = build_app(retried).test_client()
    data = client.get("/api/chainstatus", query_string={"chain": key.path}).get_json()["data"]
    assert (data["job_status"], data["resource_url"] is not None) == ("DONE", True), data
    # the run's own page says the run's history: requeued (its killed attempt's error) or failed, not the data's DONE
    detail = client.get(f"/api/runs/{run_id}").get_json()["data"]
    assert (detail["job_status"], "killed by signal 9" in str(detail["error"])) == (state.value, True), detail
    capsys.readouterr()
    for name, value in settings_env(retried).items():  # the command reads its settings from the environment
        monkeypatch.setenv(name, value)
    assert main(["status", key.path]) == 0
    assert "job_status: DONE" in capsys.readouterr().out
