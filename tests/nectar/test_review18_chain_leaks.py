"""review18 (on main): what one chain file does to its process as it is imported stays out of another chain's runs,
as under ``python -m luigi --module <that chain>``, which never imports the first."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, open_run_store
from tests.conftest import wait_until

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"

#: a chain whose import changes its process: an environment variable (as a chain reading a .env file does) and
#: ``sys.path`` (as a chain reaching its helpers by a folder of its own does)
LEAKY_CHAIN = """
import os
import sys

import luigi

os.environ["REVIEW18_LEAK"] = "set by leaky_chain"
sys.path.append("/review18-leak")


class LeakyTask(luigi.Task):
    def run(self):
        pass
"""
#: another chain, whose task writes what it finds of that variable, and whether that folder is on ``sys.path``
READER_CHAIN = """
import os
import sys

import luigi

from nectar import NectarTask


class ReaderTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.environ.get('REVIEW18_LEAK', 'unset')} {'/review18-leak' in sys.path}")
"""


LAYOUTS = pytest.mark.parametrize("flags", [[], ["--clock"]], ids=["scale-out", "clock"])


@LAYOUTS
def test_a_chains_import_time_effects_stay_out_of_another_chains_runs(
    settings: Settings,
    processes: Processes,
    write_chain: Callable[[str, str], Path],
    flags: list[str],
) -> None:
    """``nectar worker`` as the README's *Scaling out* runs it (no ``--clock``), and as ``nectar serve`` runs it
    (``--clock``), with two chain files: reader_chain's run finds ``REVIEW18_LEAK`` unset and ``/review18-leak`` off
    ``sys.path``, as ``python -m luigi --module chains.review18.reader_chain ReaderTask`` does. Under ``--clock`` the
    clock's catalog executes every chain in the worker before it forks: the variable is held to its chain's runs since
    8716cd9 (it read 'set by leaky_chain' before, and on wt64-scaleout without ``--clock`` too, reverted), and the
    folder since the lead's next commit (every attempt of every chain inherited the entry, and each run's put-back
    restored it: 'unset True')."""
    write_chain("review18/leaky_chain", LEAKY_CHAIN)
    write_chain("review18/reader_chain", READER_CHAIN)
    env = base_env() | settings_env(settings)
    proc = processes.start("worker", [*NECTAR, "worker", "--workers", "1", *flags], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    key = TargetKey("review18", "reader_chain", "ReaderTask", EMPTY)  # its output's key
    with open_run_store(settings) as runs:
        run = Run.new(key.path, "review18", "reader_chain", "ReaderTask", {}, key.path, RetryPolicy(0, 0, 1))
        run_id = runs.submit(run)[0].id
        wait_until(lambda: (now := runs.get(run_id)) is not None and not now.state.active)
        ended = runs.get(run_id)
    assert ended is not None and ended.state == RunState.DONE, ended
    found = (settings.local_targets_dir / key.path).read_text()
    assert found == "unset False", f"{found!r}: another chain's import reached this run; {os.linesep}{log.read_text()}"
