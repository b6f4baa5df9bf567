"""review19 (on main): the README's ``.venv/bin/nectar`` started in the project's folder (the one holding ``chains/``)
reads a chain file that imports a module of its own folder, relatively (``from . import greet``) or by its full name
(``from chains.<type> import greet``), as ``python -m luigi --module chains.<type>.<chain>`` started there does, and as
the service's parts (``nectar serve``'s API and worker, ``python -m`` processes started in that folder) do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Processes, lifeline_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RunState
from tests.conftest import settings_env
from tests.helpers.console import EMPTY, one_run_on_a_worker, packages_only
from tests.helpers.suiteD_luigi import LuigiOnce, luigi_once  # noqa: F401 (a fixture)

#: the chain, its import of the sibling module left to the test
CHAIN = """
import os

import luigi

{import_line}


class GreetTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["R19_OUT"], "greeting"))

    def run(self):
        with self.output().open("w") as out:
            out.write(greet.GREETING)
"""
IMPORTS = {"relative": "from . import greet", "absolute": "from chains.review19 import greet"}


@pytest.mark.parametrize("command", ["chains", "run", "worker"])
@pytest.mark.parametrize("style", list(IMPORTS))
def test_the_nectar_command_reads_a_chain_importing_a_module_of_its_folder(
    settings: Settings,
    tmp_path: Path,
    processes: Processes,
    luigi_once: LuigiOnce,  # noqa: F811 (the fixture)
    style: str,
    command: str,
) -> None:
    """``python -m luigi`` in the project's folder runs the task (checked first); ``.venv/bin/nectar`` there lists
    the chain without an import error (``nectar chains``), runs the task DONE (``nectar run``) and so does a ``nectar
    worker`` there (the README's *Scaling out*) with a run put in its registry. The suite's own
    ``nectar`` commands are ``python -m nectar.cli``, whose ``sys.path`` starts with the working folder, so they never
    saw it. Fails on main, each: ``nectar chains`` lists ``review19/greet_chain (import failed) ModuleNotFoundError:
    No module named 'chains'``, ``nectar run`` fails saying the same, with no output made, and the worker's run ends
    FAILED, ``cannot load review19/greet_chain/GreetTask: ModuleNotFoundError: No module named 'chains'``."""
    project = settings.chains_dir.parent
    files = {"chains/review19/greet.py": 'GREETING = "hello from a sibling"\n'}
    files |= {"chains/review19/greet_chain.py": CHAIN.format(import_line=IMPORTS[style])}
    for name, source in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(source)
    # the same run of luigi's for the style's three commands: made once (tests/helpers/suiteD_luigi.py)
    args = ["--module", "chains.review19.greet_chain", "GreetTask", "--local-scheduler", "--no-lock"]
    said = luigi_once.ran(files, args, "R19_OUT", where="", path=None)
    assert (said.out / "greeting").exists(), said.said
    code = packages_only(tmp_path)  # this checkout's packages, without its chains folder
    made = tmp_path / "made"
    env = {**os.environ, **settings_env(settings), "R19_OUT": str(made), "PYTHONPATH": str(code), **lifeline_env()}
    script = Path(sys.executable).parent / "nectar"  # the README's .venv/bin/nectar
    if command == "worker":
        key = TargetKey("review19", "greet_chain", "GreetTask", EMPTY)
        ended, proc = one_run_on_a_worker(
            processes, settings, [str(script), "worker", "--workers", "1"], env, project, key
        )
        log = processes.log_of[proc.pid]
        assert ended is not None and ended.state == RunState.DONE, (ended.error if ended else None, log.read_text())
        assert (made / "greeting").read_text() == "hello from a sibling"
        return
    args = ["chains"] if command == "chains" else ["run", "review19/greet_chain/GreetTask"]
    result = subprocess.run([str(script), *args], env=env, cwd=project, capture_output=True, text=True, timeout=120)
    assert "No module named" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    if command == "run":
        assert (made / "greeting").read_text() == "hello from a sibling"
