"""review18 (on main, under nectar serve): a chain file whose import never ends holds up its own
runs only, not the other chains' runs on the same ``nectar worker``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, open_run_store
from tests.conftest import wait_until
from tests.nectar.test_review18_chain_leaks import EMPTY, LAYOUTS, READER_CHAIN

#: a chain whose import waits (for a gate file the test opens only as it ends): a database or a share that does not
#: answer, a lock held elsewhere
HUNG_CHAIN = """
import os
import time

import luigi

while not os.path.exists(os.environ["REVIEW18_GATE"]):
    time.sleep(0.05)


class HungTask(luigi.Task):
    def run(self):
        pass
"""


@LAYOUTS
def test_a_chain_whose_import_hangs_holds_up_no_other_chains_run(
    settings: Settings,
    processes: Processes,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    flags: list[str],
) -> None:
    """``nectar worker`` (no ``--clock``, the scale-out layout) with a chain file whose import does not end and another
    chain (and with ``--clock``, ``nectar serve``'s worker): the other chain's run is claimed and ends DONE. It failed
    on wt64-scaleout (610c554's execute_chains, unbounded) and with ``--clock`` on main (``Clock.__init__`` executed
    every chain file before the executor started, with no bound; then its loops executed the file the probe left, in
    their thread, holding the fork gate); each file is now executed first in a probe child, within the spares' 2 s
    (README *Writing a chain*), and one that takes longer is left to its runs, by the loops too."""
    gate = tmp_path / "gate"
    write_chain("review18/hung_chain", HUNG_CHAIN)
    write_chain("review18/reader_chain", READER_CHAIN)
    env = base_env() | settings_env(settings) | {"REVIEW18_GATE": str(gate)}
    processes.start("worker", [*NECTAR, "worker", "--workers", "1", *flags], env, settings.data_dir.parent)
    key = TargetKey("review18", "reader_chain", "ReaderTask", EMPTY)
    try:
        with open_run_store(settings) as runs:
            run = Run.new(key.path, "review18", "reader_chain", "ReaderTask", {}, key.path, RetryPolicy(0, 0, 1))
            run_id = runs.submit(run)[0].id
            wait_until(lambda: (now := runs.get(run_id)) is not None and not now.state.active)
            ended = runs.get(run_id)
    finally:
        gate.touch()  # the hung import ends: the worker stops as any does
    assert ended is not None and ended.state == RunState.DONE, ended
