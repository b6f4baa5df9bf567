"""``nectar run`` takes luigi's ``--module <chain> <Task>`` (``python -m luigi --module word_chain WordTask
--local-scheduler``, copied as it is): the chain file of that name in the chains folder; a module that is no chain
file there is refused, naming it and what to write instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nectar.config import Settings
from tests.nectar.test_cli import nectar

#: a plain task writing the file ``CWDLOCK_OUT`` names
CHAIN = """
import os

import luigi


class WordTask(luigi.Task):
    word = luigi.Parameter(default="w")

    def output(self):
        return luigi.LocalTarget(os.environ["CWDLOCK_OUT"])

    def run(self):
        with self.output().open("w") as out:
            out.write(self.word)
"""


def test_nectar_run_takes_luigis_module_form_and_refuses_a_module_that_is_no_chain_file(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """``--module word_chain WordTask --word hi --local-scheduler``: exit 0, the file written 'hi'; ``--module
    nothere_chain WordTask``: exit 2 (a usage error, as nectar's others) naming ``--module nothere_chain`` and the
    chains folder. Failed before: both exit 1, "name the task as <type>/<chain>/<Task>" (the module taken as the task,
    the task as a stray word)."""
    write_chain("cwdlock/word_chain", CHAIN)
    out = tmp_path / "word.txt"
    ran = nectar(
        settings, "run", "--module", "word_chain", "WordTask", "--word", "hi", "--local-scheduler", CWDLOCK_OUT=str(out)
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert out.read_text() == "hi"
    refused = nectar(settings, "run", "--module", "nothere_chain", "WordTask", CWDLOCK_OUT=str(out))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"--module nothere_chain is no chain file of the chains folder {settings.chains_dir}" in refused.stderr
