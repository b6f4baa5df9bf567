"""A helper module a chain file imports at its top by its plain name, from a folder of the chains folder the chain puts
on ``sys.path`` (``sys.path.insert(0, <its folder>)``, then ``import helper``: as under ``python -m luigi`` with that
folder on ``PYTHONPATH``), saved since: the catalog's listing and a reused attempt process's next run take it as it is
now, as a second ``python -m luigi`` does (it is change-checked as a module named ``chains.<type>...`` is)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app import create_app
from harness import Processes
from nectar.config import Settings
from nectar.keys import TargetKey
from tests.helpers.registries import closed_at_end
from tests.helpers.reused_runs import read_before_and_after

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"

#: the chain: reaches its helper by a plain name on a folder of its own; its task's default and its output say it
CHAIN = """
import os
import sys

import luigi

from nectar import NectarTask

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
import cwdlock_word


class WordTask(NectarTask):
    word = luigi.Parameter(default=cwdlock_word.WORD, significant=False)

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {cwdlock_word.WORD}")
"""
HELPER = "cwdlock/lib/cwdlock_word"


def word(said: str) -> str:
    return f"WORD = {said!r}\n"


def test_a_plain_named_helper_saved_is_listed_as_it_is_now(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    """The task's page lists the helper's word as its default; the helper saved, the next listing lists the new one.
    Failed before: the listing kept 'old' (only modules named ``chains.<type>...`` were noted as the chain's)."""
    write_chain(HELPER, word("old"))
    write_chain("cwdlock/word_chain", CHAIN)
    app = create_app({"NECTAR_SETTINGS": settings, "TESTING": True})
    closed_at_end(app.extensions["nectar"])
    client = app.test_client()
    url = "/api/chains/cwdlock/word_chain/WordTask"

    def default() -> object:
        answer = client.get(url)
        assert answer.status_code == 200, answer.get_json()
        (param,) = [param for param in answer.get_json()["data"]["params"] if param["name"] == "word"]
        return param["default"]

    assert default() == "old"
    write_chain(HELPER, word("newer"))
    assert default() == "newer"


def test_a_plain_named_helper_saved_reaches_the_next_run_of_a_reused_process(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path]
) -> None:
    """A ``nectar worker --workers 1`` whose attempt processes take up to 100 runs runs the task; the helper saved,
    the task is run again until a run lands in the process that ran it before: each run after the save reads 'new'.
    Failed before: the reused process read 'old' (the worker executed the chain, and the helper with it, before it
    forked; the chain file unchanged, it was kept)."""
    write_chain(HELPER, word("old"))
    write_chain("cwdlock/word_chain", CHAIN)
    key = TargetKey("cwdlock", "word_chain", "WordTask", EMPTY)
    pid, read, after, _ = read_before_and_after(settings, processes, key, lambda: write_chain(HELPER, word("new")))
    assert read == "old"
    assert [read for _, read in after] == ["new"] * len(after), f"{after} (before the save: {pid})"
