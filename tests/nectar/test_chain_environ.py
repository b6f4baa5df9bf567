"""The environment variables a chain file sets as it is imported are its runs' and its importers' alone, as under
``python -m luigi --module <chain>``, in a worker that executed every chain file before it forked its attempts
(``nectar serve``'s: ``nectar worker --clock``, whose clock's catalog executes them)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, RunStore, open_run_store
from tests.conftest import wait_until

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"

#: a task that writes what it finds of the variable
WRITES = """
    def run(self):
        with self.output().open("w") as out:
            out.write(os.environ.get("CHAIN_ENV", "unset"))
"""
#: a chain that sets the variable as it is imported (as a chain reading a .env file does)
SETTER = f"""
import os

from nectar import NectarTask

os.environ["CHAIN_ENV"] = "set by setter_chain"


class SetterTask(NectarTask):{WRITES}"""
#: a chain that imports the setter's module
IMPORTER = f"""
import os

from nectar import NectarTask
from chains.envs.setter_chain import SetterTask


class ImporterTask(NectarTask):{WRITES}"""
#: a chain that does neither
OTHER = f"""
import os

from nectar import NectarTask


class OtherTask(NectarTask):{WRITES}"""


def test_a_chains_environment_variables_reach_its_runs_and_its_importers_runs_alone(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path]
) -> None:
    """One worker with its clock (it executes every chain file before its first fork) runs the three tasks one after
    another, in one reused attempt process: the setter's run and the importer's find ``CHAIN_ENV`` as the setter set
    it; the other's run finds it unset, after the setter's run in that process too. Fails before: the other's run
    read 'set by setter_chain'."""
    write_chain("envs/setter_chain", SETTER)
    write_chain("envs/importer_chain", IMPORTER)
    write_chain("envs/other_chain", OTHER)
    env = base_env() | settings_env(settings)
    proc = processes.start("worker", [*NECTAR, "worker", "--workers", "1", "--clock"], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    found = written_in_turn(settings, log, "envs", ["other", "setter", "importer", "other"])
    assert found == {
        "OtherTask": ["unset", "unset"],
        "SetterTask": ["set by setter_chain"],
        "ImporterTask": ["set by setter_chain"],
    }, log.read_text()


def written_in_turn(settings: Settings, log: Path, chain_type: str, chains: list[str]) -> dict[str, list[str]]:
    """Each ``<chain>_chain``'s ``<Chain>Task`` of ``chain_type`` run in turn (each DONE, ``log`` the worker's said
    otherwise): what each task's runs wrote in their output, by task."""
    found: dict[str, list[str]] = {}
    with open_run_store(settings) as runs:
        for name in chains:
            chain, task = f"{name}_chain", f"{name.capitalize()}Task"
            key = TargetKey(chain_type, chain, task, EMPTY)
            (settings.local_targets_dir / key.path).unlink(missing_ok=True)
            run = Run.new(key.path, chain_type, chain, task, {}, key.path, RetryPolicy(0, 0, 1))
            run_id = runs.submit(run)[0].id
            wait_until(partial(_ended, runs, run_id))
            ended = runs.get(run_id)
            assert ended is not None and ended.state == RunState.DONE, (ended, log.read_text())
            found.setdefault(task, []).append((settings.local_targets_dir / key.path).read_text())
    return found


def _ended(runs: RunStore, run_id: str) -> bool:
    now = runs.get(run_id)
    return now is not None and not now.state.active
