"""review15 (round 61): a reused attempt process whose kept chain module a run changed (the module let go) starts its
next run, if it takes one, with its collector as a fresh spare's: what it shares with its worker (frozen as it was
forked, out of its collections' sight) still frozen, not thawed with the module's."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from harness import alive
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse_freeze import CHAIN
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]


def test_a_process_whose_kept_module_a_run_let_go_keeps_what_it_shares_with_its_worker_frozen(
    settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], start_worker: StartWorker
) -> None:
    write_chain("review15/frozen_chain", CHAIN)
    reusing = settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=0, runs_per_process=1000)
    nectar = closed_at_end(Nectar(reusing))
    start_worker(reusing, workers=1)
    runs: list[tuple[Run, int]] = []

    def one(change: bool) -> tuple[Run, int]:
        submission = nectar.submit("review15", "frozen_chain", "FrozenTask", {"n": len(runs), "change": change})
        assert submission.run is not None
        run = ended(nectar, submission.run.id)
        assert run.state == RunState.DONE, run.error
        runs.append((run, int(nectar.store.read_text(TargetKey.parse(run.key)).split()[1])))  # its freeze count
        return runs[-1]

    fresh = one(False)[1]  # a fresh spare's first run: what it shares with its worker, frozen as it was forked
    assert fresh > 0

    def in_a_process(change: bool, where: Callable[[Run, int], bool]) -> tuple[Run, int]:
        """Runs (given ``change``) one after the other until one is ``where``: which spare takes each is not
        counted."""
        wait_until(lambda: where(*one(change)), timeout=180, interval=0)
        return runs[-1]

    # in the process of the first run: a run that leaves its module as executed (kept from then on, and frozen with
    # what the process holds), one that changes it (let go); then the runs after, until one runs in that process (it
    # reads what is frozen as it begins), or the process is gone (it did not stay to run one thawed)
    first = pid_of(runs[0][0])
    for change in (False, True):
        in_a_process(change, lambda run, _: pid_of(run) == first)
    let_go = len(runs)
    in_a_process(False, lambda run, _: pid_of(run) == first or not alive(first))
    after = [(run.worker, frozen) for run, frozen in runs[let_go:] if pid_of(run) == first]
    assert all(frozen >= 0.9 * fresh for _, frozen in after), (after, fresh, [(r.worker, f) for r, f in runs])
