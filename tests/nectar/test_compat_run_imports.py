"""A module of the chains folder that a task imports inside ``run()`` (not at the chain's top) and that is saved between
two runs: ``python -m luigi`` runs each command in a fresh process, which imports it as it is on disk; a reused attempt
process (``NECTAR_RUNS_PER_PROCESS`` above 1) must import it again too, not keep the first run's. Each way a run reaches
such a module: by its name under ``chains.``, relatively (``from . import ...``), and by a plain name on a folder the
chain file puts on ``sys.path`` (``import helper``, as under ``python -m luigi`` with the chain's folder on
``PYTHONPATH``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness import Processes
from nectar.config import Settings
from nectar.keys import TargetKey
from tests.helpers.reused_runs import read_before_and_after

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"

#: the chain: its task imports three helpers inside run(), one each way, and writes what each answers
CHAIN = """
import os
import sys

from nectar import NectarTask

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "plain"))


class ImportsInRunTask(NectarTask):
    def run(self):
        from chains.compat67 import named_helper
        from . import relative_helper
        import plain_helper

        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {named_helper.said()},{relative_helper.said()},{plain_helper.said()}")
"""
#: the helpers, each by its file under the chains folder
HELPERS = ("compat67/named_helper", "compat67/relative_helper", "compat67/plain/plain_helper")


def helper(word: str) -> str:
    return f"def said():\n    return {word!r}\n"


def test_a_module_imported_in_run_and_saved_reaches_the_next_run_of_a_reused_process(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path]
) -> None:
    """A ``nectar worker --workers 1`` whose attempt processes take up to 100 runs runs the task; each helper is saved
    ('new' for 'old'), the output removed, the task run again until a run lands in a process that ran it before: every
    run after the save reads 'new' thrice, as a second ``python -m luigi`` would. Failed before round 67 (compat): the
    reused process read 'old,old,old' (the modules the first run imported were kept in ``sys.modules``)."""
    for ref in HELPERS:
        write_chain(ref, helper("old"))
    write_chain("compat67/run_imports_chain", CHAIN)
    key = TargetKey("compat67", "run_imports_chain", "ImportsInRunTask", EMPTY)

    def save() -> None:
        for ref in HELPERS:
            write_chain(ref, helper("new"))

    pid, read, after, log = read_before_and_after(settings, processes, key, save)
    assert read == "old,old,old"
    assert [read for _, read in after] == ["new,new,new"] * len(after), (
        f"{after}: a module as saved did not reach the run (before the save: {pid}){os.linesep}{log.read_text()}"
    )
