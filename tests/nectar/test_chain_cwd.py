"""The working directory a chain file moves to as it is imported, and the ``sys.path`` entries it takes off, are its
runs' and its importers' alone, as under ``python -m luigi --module <chain>``, in a worker that executed every chain
file before it forked its attempts (``nectar worker --clock``) and reuses one attempt process for every run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from tests.conftest import wait_until
from tests.nectar.test_chain_environ import written_in_turn

#: a chain file: its ``head`` at its top, then its task, which writes its working directory and whether the folder
#: ``EXTRA`` is on ``sys.path``
CHAIN = """
import os
import sys

from nectar import NectarTask
{head}

class {task}(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{{os.getcwd()}} {{os.environ['EXTRA'] in sys.path}}")
"""
#: the mover moves to the folder ``MOVE_TO`` as it is imported and takes ``EXTRA`` off ``sys.path``; the importer
#: imports the mover's module; the other does neither
HEADS = {
    "mover": 'os.chdir(os.environ["MOVE_TO"])\nsys.path.remove(os.environ["EXTRA"])',
    "importer": "from chains.cwd.mover_chain import MoverTask",
    "other": "",
}


def test_a_chains_working_directory_and_the_path_it_removes_reach_its_runs_and_its_importers_runs_alone(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """One worker with its clock runs the three tasks one after another in one reused attempt process: the mover's
    and the importer's runs find the mover's folder as their working directory and ``EXTRA`` off ``sys.path``; the
    other's finds the worker's own folder and ``EXTRA`` on it, after the mover's run in that process too."""
    for name, head in HEADS.items():
        write_chain(f"cwd/{name}_chain", CHAIN.format(head=head, task=f"{name.capitalize()}Task"))
    moved, extra, home = tmp_path / "moved", tmp_path / "extra", settings.data_dir.parent
    moved.mkdir()
    extra.mkdir()
    env = base_env() | settings_env(settings)
    env |= {"MOVE_TO": str(moved), "EXTRA": str(extra)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(extra)]))
    proc = processes.start("worker", [*NECTAR, "worker", "--workers", "1", "--clock"], env, home)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    found = written_in_turn(settings, log, "cwd", ["other", "mover", "importer", "other"])
    assert found == {
        "OtherTask": [f"{home} True", f"{home} True"],
        "MoverTask": [f"{moved} False"],
        "ImporterTask": [f"{moved} False"],
    }, log.read_text()
