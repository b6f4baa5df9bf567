"""review19 (on main): a chain file that imports a helper module of its own folder (``chains/<type>/helpers.py``, as
a data scientist splits shared code out of two chains) or another chain file (``chains/<type>/base_chain.py``) runs
that module as it is on disk now, as ``python -m luigi --module chains.<type>.<chain>`` does (each command a process
of its own), and as the README's "Save the file and it is live" says of a chain file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RunState, open_run_store
from tests.helpers.console import EMPTY, ended_run, started_worker

#: the chain: its task writes what the helper module says now
USER_CHAIN = """
from nectar import NectarTask

from chains.review19 import {module} as helpers


class UsesHelperTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write(helpers.fixed_step())
"""


@pytest.mark.parametrize("runs_per_process", ["1", "100"], ids=["fresh", "reused"])
@pytest.mark.parametrize("module", ["helpers", "base_chain"])
@pytest.mark.parametrize("flags", [[], ["--clock"]], ids=["scale-out", "clock"])
def test_a_fix_saved_to_a_chains_helper_module_reaches_the_next_run(
    settings: Settings,
    processes: Processes,
    write_chain: Callable[[str, str], Path],
    flags: list[str],
    module: str,
    runs_per_process: str,
) -> None:
    """The README's failover ("fix the bug in step 3, launch again"), with step 3's code in a helper module: the first
    run reads the helper's 'bug', the helper is saved fixed, the output removed and the task run again: it reads
    'fixed', as ``python -m luigi`` would. Fails on main, each module and layout: the second run reads 'bug' (the worker
    imported the module as it executed its chains at its start, and each attempt is forked from it; a fresh attempt
    process too, ``NECTAR_RUNS_PER_PROCESS=1``)."""
    write_chain(f"review19/{module}", 'def fixed_step():\n    return "bug"\n')
    write_chain("review19/user_chain", USER_CHAIN.format(module=module))
    env = base_env() | settings_env(settings) | {"NECTAR_RUNS_PER_PROCESS": runs_per_process}
    _, log = started_worker(processes, [*NECTAR, "worker", "--workers", "1", *flags], env, settings.data_dir.parent)
    key = TargetKey("review19", "user_chain", "UsesHelperTask", EMPTY)
    output = settings.local_targets_dir / key.path
    found = []
    with open_run_store(settings) as runs:
        for fix in [None, 'def fixed_step():\n    return "fixed"\n']:
            if fix is not None:
                write_chain(f"review19/{module}", fix)
                output.unlink()
            ended = ended_run(runs, key)
            assert ended is not None and ended.state == RunState.DONE, (ended, log.read_text())
            found.append(output.read_text())
    assert found == ["bug", "fixed"], f"{found}: the helper as saved did not reach the run{os.linesep}{log.read_text()}"
