"""review22, a guard that passes on main, for wt68-cwdlock (``nectar.catalog.asked``): a chain that moves to its data
folder at its top (``os.chdir``) and names its output relatively with a target of luigi's ``FileSystemTarget`` family
that is not a ``LocalTarget`` (its own ``fs``, luigi's ``LocalFileSystem``: luigi's ``exists()``, which reads the
path against the working directory at the call; ``luigi.contrib.sqla``'s ``sqlite:///relative.db`` reads it alike).
Main asks luigi's ``complete()`` of such a task in the folder its runs have (round 67, ``asked_in_run_folder``), as
``python -m luigi`` started there does. cwdlock asks an output whose ``exists()`` is luigi's code where the process
is, with no lock (``_own_exists``), and makes absolute only a ``LocalTarget``'s path (``_rebased``): so it asks the
API's own folder, and the DONE task is queued again at each submission."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings

CHAIN = '''
"""Moves to its data folder; its output a flag file of luigi's FileSystemTarget family, named relatively."""

import os

import luigi
from luigi.local_target import LocalFileSystem
from luigi.target import FileSystemTarget

os.chdir({folder!r})


class FlagTarget(FileSystemTarget):
    fs = LocalFileSystem()

    def open(self, mode="r"):
        return open(self.path, mode)


class FlagTask(luigi.Task):
    def output(self):
        return FlagTarget("flag.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")
'''


def test_a_relative_file_system_target_of_a_chain_that_moved_is_found_in_its_folder(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
) -> None:
    """The flag is in the chain's folder (as its run, or ``python -m luigi`` started there, makes it): a submission is
    answered ``200`` DONE, no run queued, as luigi counts the task complete there."""
    folder = tmp_path / "data-folder"
    folder.mkdir()
    (folder / "flag.txt").write_text("made\n")
    write_chain("moved/flag_chain", CHAIN.format(folder=str(folder)))
    client = client_for(settings)
    answer = client.post("/api/chains/moved/flag_chain/FlagTask", json={})
    body = answer.get_json()
    assert (answer.status_code, body["data"]["job_status"]) == (200, "DONE"), body
