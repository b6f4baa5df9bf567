"""review20 (on main): a task that spreads its work over a process pool of the ``spawn`` start method
(``ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn"))``: macOS's default, the safe choice in a
process with threads, and close to Python 3.14's default on Linux, ``forkserver``, which imports the same way). Each
pool process is a fresh interpreter given the run's ``sys.path``, and unpickles the task's function by its module's
name, ``chains.<type>.<chain>``. Round 65 made the package ``chains`` importable in a ``nectar`` process wherever it
starts (``loader._ChainsFolders`` on ``sys.meta_path``), but not in the processes a run spawns: under the README's
``nectar run`` and a ``nectar worker`` started outside the chains' parent folder (the scale-out layout), each pool
process fails ``ModuleNotFoundError: No module named 'chains'`` and the run FAILED ``BrokenProcessPool``, where
``python -m luigi --module <chain>`` runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Processes, base_env
from nectar.config import Settings
from nectar.keys import TargetKey
from tests.conftest import settings_env
from tests.helpers.console import EMPTY, done_by_a_command, packages_only
from tests.helpers.suiteD_luigi import LuigiOnce, luigi_once  # noqa: F401 (a fixture)

#: a plain luigi task squaring five numbers in a pool of spawned processes, its file in ``R20_OUT``
CHAIN = """
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import luigi


def square(x):
    return x * x


class PoolTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["R20_OUT"], "squares"))

    def run(self):
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            squares = list(pool.map(square, range(5)))
        with self.output().open("w") as out:
            out.write(repr(squares))
"""


@pytest.mark.parametrize("how", ["run", "worker"])
def test_a_task_with_a_spawned_process_pool_runs_whatever_folder_the_command_starts_in(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    processes: Processes,
    luigi_once: LuigiOnce,  # noqa: F811 (the fixture)
    how: str,
) -> None:
    """``python -m luigi`` on the same file makes the squares (checked first, in the chain's folder); then ``nectar
    run`` and a ``nectar worker``, each started in another folder with this checkout's packages alone on its path (as
    the README's ``.venv/bin/nectar`` has them), end the run DONE with the same file. Fails on main, each: the run
    FAILED, ``BrokenProcessPool``, its stderr ``ModuleNotFoundError: No module named 'chains'`` from each pool
    process."""
    write_chain("review20/pool_chain", CHAIN)
    # the same run of luigi's for both commands: made once (tests/helpers/suiteD_luigi.py)
    args = ["--module", "pool_chain", "PoolTask", "--local-scheduler", "--no-lock"]
    said = luigi_once.ran(
        {"chains/review20/pool_chain.py": CHAIN}, args, "R20_OUT", "chains/review20", "chains/review20"
    )
    assert (said.out / "squares").read_text() == "[0, 1, 4, 9, 16]", said.said
    made = tmp_path / "made"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = base_env() | settings_env(settings) | {"R20_OUT": str(made), "PYTHONPATH": str(packages_only(tmp_path))}
    key = TargetKey("review20", "pool_chain", "PoolTask", EMPTY)
    done_by_a_command(processes, settings, how, env, elsewhere, key)
    assert (made / "squares").read_text() == "[0, 1, 4, 9, 16]"
