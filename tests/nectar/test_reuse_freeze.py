"""A reused attempt process freezes what it holds once its kept chain module stayed kept through
:data:`~nectar.reuse.FREEZE_AFTER` runs (:func:`nectar.reuse.out_of_sight`), once in its life: a module let go after
that neither thaws what is frozen nor retires the process, and no later module is frozen there. A real
``nectar worker`` and luigid; each run writes what its process's collector holds as the run begins."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import alive
from nectar import reuse
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]
#: keepable (:mod:`nectar.catalog.keepable`); each run writes how many runs before it in its process ran in its module
#: (kept through them), the collector's freeze count and whether its task class is in the collector's sight, all as
#: the run begins; a run given ``change`` then rebinds a global, which lets the module go
CHAIN = """
import builtins
import gc
import sys

import luigi

from nectar import NectarTask

WORD = "fresh"


class FrozenTask(NectarTask):
    n = luigi.IntParameter()
    change = luigi.BoolParameter(default=False)

    def run(self):
        module = sys.modules[__name__]
        seen = builtins.__dict__.setdefault("_reuse_freeze_test", [])
        kept = sum(earlier is module for earlier in seen)
        seen.append(module)
        frozen = gc.get_freeze_count()
        in_sight = any(found is FrozenTask for found in gc.get_objects())
        if self.change:
            globals()["WORD"] = "changed"
        with self.output().open("w") as out:
            out.write(f"{kept} {frozen} {'in-sight' if in_sight else 'out'}\\n")
"""


@dataclass
class Said:
    """What a run wrote: how many runs before it in its process ran in its module, the freeze count and whether its
    class was in sight."""

    pid: int
    kept: int
    frozen: int
    in_sight: bool


@dataclass
class Runs:
    nectar: Nectar
    said: list[Said] = field(default_factory=list)

    def one(self, change: bool = False) -> Said:
        submission = self.nectar.submit("freeze", "frozen_chain", "FrozenTask", {"n": len(self.said), "change": change})
        assert submission.run is not None
        run: Run = ended(self.nectar, submission.run.id)
        assert run.state == RunState.DONE, run.error
        kept, frozen, sight = self.nectar.store.read_text(TargetKey.parse(run.key)).split()
        self.said.append(Said(pid_of(run), int(kept), int(frozen), sight == "in-sight"))
        return self.said[-1]

    def of(self, pid: int) -> list[Said]:
        return [said for said in self.said if said.pid == pid]

    def until(self, pid: int, count: int, change: bool = False) -> list[Said]:
        """Runs (given ``change``) one after the other until ``pid`` ran ``count`` in all, or is gone (which spare
        takes each run is not counted); what ``pid``'s runs wrote."""
        wait_until(lambda: self.one(change) and (len(self.of(pid)) >= count or not alive(pid)), timeout=180, interval=0)
        return self.of(pid)


@pytest.fixture
def runs(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], start_worker: StartWorker) -> Runs:
    write_chain("freeze/frozen_chain", CHAIN)
    reusing = settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=0, runs_per_process=1000)
    start_worker(reusing, workers=1)
    return Runs(closed_at_end(Nectar(reusing)))


def frozen_after(runs: Runs) -> tuple[int, list[Said]]:
    """The process of the first run, and what its runs wrote (its module left unchanged) until one ran in a module
    kept through ``FREEZE_AFTER`` runs before it: how many runs that takes depends on when the chain file settled
    (:data:`~nectar.catalog.loader.SETTLED`: until then each set-up executes it anew), so it is not counted."""
    first = runs.one().pid
    wait_until(
        lambda: runs.one() and not alive(first) or runs.of(first)[-1].kept >= reuse.FREEZE_AFTER,
        timeout=180,
        interval=0,
    )
    return first, runs.of(first)


def test_a_kept_module_is_frozen_after_its_runs_and_out_of_its_collections(runs: Runs) -> None:
    """A process's first run finds no more frozen than its spare froze at its fork, its task class in its
    collector's sight; once its module stayed kept through ``FREEZE_AFTER`` runs, more is frozen, the class with
    it."""
    first, said = frozen_after(runs)

    assert said[0].kept == 0 and said[0].in_sight, said
    assert said[-1].kept >= reuse.FREEZE_AFTER and not said[-1].in_sight, said
    assert said[-1].frozen > said[0].frozen, said


def test_a_module_let_go_in_a_frozen_process_thaws_nothing_and_the_process_takes_more_runs(runs: Runs) -> None:
    """Its module let go once frozen (a run changed it): the process takes its next runs (not retired), with what it
    froze still frozen (not thawed: its freeze count stays above its spare's), and the module executed anew in its
    place is never frozen, however long it stays kept (once in a process's life)."""
    first, said = frozen_after(runs)
    fresh, frozen = said[0].frozen, said[-1].frozen
    assert frozen > fresh, said
    changed = len(runs.until(first, len(said) + 1, change=True))
    after = runs.until(first, changed + reuse.FREEZE_AFTER + 2)[changed:]

    assert alive(first) and len(after) == reuse.FREEZE_AFTER + 2, (first, runs.said)
    assert [(s.kept, s.in_sight) for s in after] == [(k, True) for k in range(len(after))], after
    assert all(s.frozen > (fresh + frozen) / 2 for s in after), (fresh, frozen, after)
