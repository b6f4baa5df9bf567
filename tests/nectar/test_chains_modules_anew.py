"""A fix saved to any module of the chains folder reaches the next run, as ``python -m luigi --module
chains.<type>.<chain>`` runs it (each command a process of its own): a module a chain's new code names for the first
time that another chain imported before it changed, and modules deeper than ``chains/<type>/<name>.py`` (a module of
a package of the chain type's folder, the package's ``__init__.py``, by an absolute or a relative import)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RunState, open_run_store
from tests.helpers.console import EMPTY, ended_run, started_worker

#: the chain: its task writes what the helper module says now (``{imported}``: how it imports it, as ``helpers``)
USER_CHAIN = """
from nectar import NectarTask

{imported}


class UsesHelperTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write({said})
"""
#: another chain of the folder that imports the helper module: the worker executes it at its start
OTHER_CHAIN = """
from chains.r66 import {module} as helpers


def unused():
    return helpers.fixed_step()
"""


class Case(NamedTuple):
    #: the helper module's file under the chain type's folder, without ``.py``
    module: str
    #: how the chain imports it as ``helpers`` (its later version, for ``first``)
    imported: str
    #: whether the chain first names no helper (it says "none") and another chain imports the helper from the start
    first: bool = False


CASES = {
    "first-named": Case("helpers", "from chains.r66 import helpers", first=True),
    "first-named-chain-file": Case("base_chain", "from chains.r66 import base_chain as helpers", first=True),
    "package-module": Case("sub/mod", "from chains.r66.sub import mod as helpers"),
    "package-init-relative": Case("sub/__init__", "from . import sub as helpers"),
    "relative": Case("sub/mod", "from .sub import mod as helpers"),
}


@pytest.mark.parametrize("runs_per_process", ["1", "100"], ids=["fresh", "reused"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_fix_saved_to_any_module_of_the_chains_folder_reaches_the_next_run(
    settings: Settings,
    processes: Processes,
    write_chain: Callable[[str, str], Path],
    case: Case,
    runs_per_process: str,
) -> None:
    """The first run reads the helper's 'bug' (or, ``first``, the chain names no helper yet: 'none'); the helper is
    saved fixed (and the chain saved to import it), the output removed and the task run again: it reads 'fixed', as
    ``python -m luigi`` would. Failed before in each case and kind of attempt process: the second run read 'bug'.
    A module first named by the chain's new code was judged by what it imports, not by its own file, though another
    chain had imported it (in the worker, before the fix) and was not executed since (a chain file the catalog executed
    too: by no stamp at all, the catalog's execution noting none); a module deeper than
    ``chains.<type>.<name>`` was never seen as the chain's import."""
    write_chain(f"r66/{case.module}", 'def fixed_step():\n    return "bug"\n')
    if case.module.startswith("sub/") and case.module != "sub/__init__":
        write_chain("r66/sub/__init__", "")
    if case.first:
        write_chain("r66/other_chain", OTHER_CHAIN.format(module=case.module))
        write_chain("r66/user_chain", USER_CHAIN.format(imported="", said='"none"'))
    else:
        write_chain("r66/user_chain", USER_CHAIN.format(imported=case.imported, said="helpers.fixed_step()"))
    env = base_env() | settings_env(settings) | {"NECTAR_RUNS_PER_PROCESS": runs_per_process}
    _, log = started_worker(processes, [*NECTAR, "worker", "--workers", "1"], env, settings.data_dir.parent)
    key = TargetKey("r66", "user_chain", "UsesHelperTask", EMPTY)
    output = settings.local_targets_dir / key.path
    found = []
    with open_run_store(settings) as runs:
        for fixed in [False, True]:
            if fixed:
                write_chain(f"r66/{case.module}", 'def fixed_step():\n    return "fixed"\n')
                if case.first:
                    write_chain(
                        "r66/user_chain", USER_CHAIN.format(imported=case.imported, said="helpers.fixed_step()")
                    )
                output.unlink()
            ended = ended_run(runs, key)
            assert ended is not None and ended.state == RunState.DONE, (ended, log.read_text())
            found.append(output.read_text())
    first = "none" if case.first else "bug"
    assert found == [first, "fixed"], f"{found}: the module as saved did not reach the run{os.linesep}{log.read_text()}"
