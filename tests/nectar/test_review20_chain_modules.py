"""review20 (on main): a chain's own modules as a data scientist lays them out beyond review19's two cases (one helper
module, imported by its absolute name at the chain's top): imported relatively, two levels deep (the chain imports a
helper that imports another) or in a subpackage of the chain's folder. ``python -m luigi --module
chains.<type>.<chain>`` runs each module as it is on disk now (each command a process of its own), and the README's
failover ("fix the bug in step 3, launch again") and round 65's fix of review19's finding say a saved module reaches the
next run; these check that it does for each layout, review19's own (one helper, imported absolutely) the control:
review20 left it out after it read the old module in 2 of 11 runs of this file; round 66's modules put it back, with
the flake of review19's own file (a chain file's stamp as executed) fixed and this file run again and again."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Processes
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import open_run_store
from tests.helpers.reused_runs import one_slot_worker
from tests.helpers.reused_runs import run_once as run_to_end

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"

BUG = 'def fixed_step():\n    return "bug"\n'
FIXED = 'def fixed_step():\n    return "fixed"\n'

#: each layout: the files written before the first run (relative to the chains folder, without ``.py``), the chain's
#: source, and the module the fix is saved to
LAYOUTS: dict[str, tuple[dict[str, str], str, str]] = {
    "absolute": (  # review19's case: the control
        {"review20/helpers": BUG},
        "from chains.review20 import helpers\n\n\ndef step():\n    return helpers.fixed_step()\n",
        "review20/helpers",
    ),
    "relative": (
        {"review20/helpers": BUG},
        "from . import helpers\n\n\ndef step():\n    return helpers.fixed_step()\n",
        "review20/helpers",
    ),
    "two-levels": (
        {
            "review20/util": BUG,
            "review20/helpers": "from chains.review20 import util\n\n\ndef fixed_step():\n"
            "    return util.fixed_step()\n",
        },
        "from chains.review20 import helpers\n\n\ndef step():\n    return helpers.fixed_step()\n",
        "review20/util",
    ),
    "subpackage": (
        {"review20/lib/__init__": "", "review20/lib/steps": BUG},
        "from chains.review20.lib import steps\n\n\ndef step():\n    return steps.fixed_step()\n",
        "review20/lib/steps",
    ),
}

#: the task: writes what its module's ``step()`` answers (the layout's chain source goes first)
TASK = """

import os

from nectar import NectarTask


class UsesModuleTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {step()}")
"""


#: every layout, unmarked (round 66: gaps' relative and subpackage cases, modules' two levels deep)
CASES = [
    pytest.param(layout, per_process, id=f"{layout}-{name}")
    for layout in LAYOUTS
    for per_process, name in (("1", "fresh"), ("100", "reused"))
]


@pytest.mark.parametrize(("layout", "runs_per_process"), CASES)
def test_a_fix_saved_to_a_chains_module_reaches_the_next_run_whatever_its_layout(
    settings: Settings,
    processes: Processes,
    write_chain: Callable[[str, str], Path],
    layout: str,
    runs_per_process: str,
) -> None:
    """A ``nectar worker`` (the scale-out layout) runs the task; the module is saved fixed, the output removed, the
    task run again: the second run reads 'fixed', as a second ``python -m luigi`` would. Failed before round 66 (strict
    xfails): the second run read 'bug', DONE, for a helper imported relatively (``from . import helpers``), the
    module a helper imports (``two-levels``: until modules' ``changed_imports`` named the changed module itself, not
    only the helper that imports it), a module of a subpackage (``chains/<type>/lib/``), in a fresh and a reused
    attempt process alike (the worker imported it as it executed its chains at its start; each attempt is forked from
    it)."""
    files, chain, fixed = LAYOUTS[layout]
    for ref, source in files.items():
        write_chain(ref, source)
    write_chain("review20/user_chain", chain + TASK)
    log = one_slot_worker(settings, processes, runs_per_process)
    key = TargetKey("review20", "user_chain", "UsesModuleTask", EMPTY)
    before: set[str] = set()  # the processes that ran the task before the fix
    after: list[tuple[str, str]] = []  # (process, what it read) of each run after the fix
    with open_run_store(settings) as runs:

        def run_once() -> tuple[str, str]:
            return run_to_end(settings, runs, key, log)

        pid, read = run_once()
        assert read == "bug"
        before.add(pid)
        write_chain(fixed, FIXED)
        # a reused process takes a later run, not always the next one (a spare forked meanwhile may): runs until one
        # lands in a process that ran the task before the fix (a count, not a time: 20 runs of 1 slot and 2 spares)
        while len(after) < 20 and (runs_per_process == "1" and not after or runs_per_process != "1"):
            after.append(run_once())
            if after[-1][0] in before:
                break
    assert [read for _, read in after] == ["fixed"] * len(after), (
        f"{after}: the module as saved did not reach the run (before the fix: {before}){os.linesep}{log.read_text()}"
    )
    if runs_per_process != "1":
        assert after[-1][0] in before, f"no run after the fix was reused: {after}"
