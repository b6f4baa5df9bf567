"""job_status of a key, as a client polling it sees it: registry first, then the store, then luigid."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import luigi
import pytest

from nectar.config import Settings
from nectar.errors import RunNotFound
from nectar.keys import TargetKey
from nectar.service import Nectar
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
