"""review24 (round 70), written as a guard (it passed on main before wt70-xfails was merged) for the mend of review23's
store-disk-full finding (wt70-xfails: a run meeting its store's full disk is requeued, uncounted, every 5 s, until there
is room): a task whose own output outgrows the store's disk is the task's failure, not an outage to wait out. Its
attempt fills the disk with its output's temporary file and meets ENOSPC; the file stays until the next attempt of the
step removes it (a killed writer's leftovers), so the disk reads full as the attempt ends. Before the merge the run
ended FAILED (``OSError: [Errno 28] No space left on device``), its attempt counted. On wt70-xfails (95c94fc, merged,
and since) it is requeued uncounted, every 5 s, for good: PENDING, attempt 0 after 15 s and three attempts, each filling
the disk again (every other run's writes meet the full disk meanwhile), its retries never spent. Same 4 MB tmpfs as
review21's (root only; skipped where ``mount`` is refused)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.api.test_review21_disk_full import small_disk  # noqa: F401 (small_disk: the fixture, a 4 MB tmpfs)
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

#: a task whose output (8 MB) is larger than the store's whole disk (4 MB)
CHAIN = """
from nectar import NectarTask


class BigTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            for _ in range(2048):
                out.write("x" * 4096)
"""


def test_a_task_whose_output_outgrows_the_stores_disk_fails_counted(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    small_disk: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    write_chain: Callable[[str, str], Path],
) -> None:
    write_chain("review24/big_chain", CHAIN)
    targets = small_disk / "targets"
    targets.mkdir()
    on_small = settings.replace(local_targets_dir=targets)
    answer = client_for(on_small).post("/api/chains/review24/big_chain/BigTask", json={})
    assert answer.status_code == 202, answer.get_json()
    run_id = answer.get_json()["data"]["run_id"]
    nectar = closed_at_end(Nectar(on_small))
    start_worker(on_small, workers=1)
    log = tmp_path / "worker-0.log"

    def over_or_put_back() -> bool:  # its end, or the worker's word that it put the run back (the mend's)
        run = nectar.runs.get(run_id)
        return run is not None and not run.state.active or "requeued, not counted" in log.read_text()

    wait_until(over_or_put_back)
    run = nectar.runs.get(run_id)
    assert run is not None and (run.state, run.attempt) == (RunState.FAILED, 1), (run, log.read_text()[-2000:])
    assert "No space left on device" in (run.error or ""), run.error
