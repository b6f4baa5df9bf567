"""The store's full disk waited out. A worker claims no run while its store has no room (it says so at WARNING), and a
run whose own output fills its store's disk (room enough when it was claimed: the worker's gate saw nothing) is
put back uncounted and ends DONE once there is room (``nectar.attempt``: the store's full disk an outage, not the
task's failure). The disk is made full for real: review21's 4 MB tmpfs (root only, skipped where ``mount`` is
refused); the suite's settings give no retry, so a counted attempt would end the run FAILED."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.api.test_review21_disk_full import fill, small_disk  # noqa: F401 (small_disk: the fixture, a 4 MB tmpfs)
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

HELLO = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"
#: room left on the store's disk as the run is claimed: more than the worker's gate asks (1 MiB), less than the output
ROOM = 1536 * 1024
CHAIN = f"""
from nectar import NectarTask


class BigTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("x" * {2 * ROOM})
"""


@dataclass
class FullStore:
    """A run queued on a store whose disk has ``room`` bytes left, and a worker started on it."""

    nectar: Nectar
    run_id: str
    log: Path

    def said(self, text: str) -> bool:
        return text in self.log.read_text()

    def ended(self) -> bool:
        run = self.nectar.runs.get(self.run_id)
        return run is not None and not run.state.active

    def run(self) -> Run:
        found = self.nectar.runs.get(self.run_id)
        assert found is not None
        return found


@pytest.fixture
def full_store(
    small_disk: Path,  # noqa: F811 (the fixture)
    settings: Settings,
    client_for: Callable[[Settings], FlaskClient],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Callable[..., FullStore]:
    def queue(path: str, room: int, body: dict[str, str] | None = None) -> FullStore:
        (small_disk / "targets").mkdir()
        on_small = settings.replace(local_targets_dir=small_disk / "targets")
        fill(small_disk)
        filler = small_disk / "filler"
        os.truncate(filler, filler.stat().st_size - room)
        answer = client_for(on_small).post(path, json=body or {})
        assert answer.status_code == 202, answer.get_json()
        made = FullStore(
            closed_at_end(Nectar(on_small)), answer.get_json()["data"]["run_id"], tmp_path / "worker-0.log"
        )
        start_worker(on_small, workers=1)
        return made

    return queue


def test_a_run_filling_its_stores_disk_waits_for_room_and_ends_done(
    full_store: Callable[..., FullStore],
    small_disk: Path,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
) -> None:
    write_chain("big/big_chain", CHAIN)
    queued = full_store("/api/chains/big/big_chain/BigTask", ROOM)
    # the worker's word of the store's full disk, or the run ended (before: FAILED, its attempt counted)
    wait_until(lambda: queued.said("met its store's full disk") or queued.ended())
    (small_disk / "filler").unlink()
    wait_until(queued.ended, timeout=120)
    assert queued.run().state == RunState.DONE, (queued.run(), queued.log.read_text()[-3000:])


def test_a_worker_claims_no_run_while_its_store_has_no_room(
    full_store: Callable[..., FullStore],
    small_disk: Path,  # noqa: F811
) -> None:
    queued = full_store(HELLO, 0, {"aparam": "room"})
    # the worker's word that it waits, or the run claimed (before: claimed, met the full disk, put back, again)
    wait_until(lambda: queued.said("not claiming runs until the store has room") or queued.run().attempt > 0)
    assert queued.run().attempt == 0, (queued.run(), queued.log.read_text()[-3000:])
    (small_disk / "filler").unlink()
    wait_until(queued.ended, timeout=120)
    assert queued.run().state == RunState.DONE, queued.run()
