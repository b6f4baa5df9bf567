"""review19 (on main): a task with dynamic dependencies (a ``yield`` in ``run()``, luigi's documented feature and its
``examples/dynamic_requirements.py``) runs them under ``nectar run`` and under a ``nectar worker`` whatever folder the
command starts in, as ``python -m luigi --module <chain>`` does. luigi's worker loads each yielded task with
``load_task``, whose ``__import__('chains.<type>.<chain>')`` needs a package ``chains`` on ``sys.path``."""

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

#: a plain luigi task that yields its dependency from ``run()``, its files in ``R19_OUT``
CHAIN = """
import os

import luigi


class Leaf(luigi.Task):
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["R19_OUT"], "leaf"))

    def run(self):
        with self.output().open("w") as out:
            out.write("leaf")


class DynTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["R19_OUT"], "dyn"))

    def run(self):
        leaf = yield Leaf()
        with leaf.open() as made, self.output().open("w") as out:
            out.write(f"dyn of {made.read()}")
"""


@pytest.mark.parametrize("how", ["run-local", "run-luigid", "worker"])
def test_a_tasks_dynamic_dependencies_run_whatever_folder_the_command_starts_in(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    luigid: str,
    processes: Processes,
    luigi_once: LuigiOnce,  # noqa: F811 (the fixture)
    how: str,
) -> None:
    """``python -m luigi`` on the same file makes both outputs (checked first, in its own folder). Then the service's
    command, started as the README's ``.venv/bin/nectar`` starts: no folder on its ``sys.path`` holds a ``chains``
    package (a console script's first entry is its ``bin``, the install an editable one of the packages alone), where
    the suite's ``nectar`` commands (``python -m nectar.cli`` in the chains' parent folder, or a ``PYTHONPATH`` of the
    repository) always had one: ``nectar run`` (luigi's local scheduler, and through luigid) and a ``nectar worker``
    end the run DONE with the same outputs. Fails on main, each: the run FAILED, ``ModuleNotFoundError: No module
    named 'chains'``, no output."""
    write_chain("review19/dyn_chain", CHAIN)
    # the same run of luigi's for the three commands: made once (tests/helpers/suiteD_luigi.py)
    args = ["--module", "dyn_chain", "DynTask", "--local-scheduler", "--no-lock"]
    said = luigi_once.ran(
        {"chains/review19/dyn_chain.py": CHAIN}, args, "R19_OUT", "chains/review19", "chains/review19"
    )
    assert (said.out / "dyn").exists(), said.said
    assert (said.out / "dyn").read_text() == "dyn of leaf"
    made = tmp_path / "made"
    code = packages_only(tmp_path)  # this checkout's packages, without its chains folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = base_env() | settings_env(settings) | {"R19_OUT": str(made), "PYTHONPATH": str(code)}
    flags = ["--scheduler-url", luigid] if how == "run-luigid" else []
    key = TargetKey("review19", "dyn_chain", "DynTask", EMPTY)
    done_by_a_command(processes, settings, how, env, elsewhere, key, flags)
    assert (made / "dyn").read_text() == "dyn of leaf"
