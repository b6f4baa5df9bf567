"""A scale-out worker (``nectar worker`` without ``--clock``) executes its chain files before it forks its first
attempt, as ``nectar serve``'s worker does through its clock: what a chain imports is imported once, in the worker,
not by each attempt in its run's path (nectar.cli.local.execute_chains). A chain changed on disk is still executed
anew by the next run; a chain that does not import, or exits as it is imported, does not stop the worker."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, RunStore, open_run_store
from tests.conftest import wait_until

#: seconds that only fail a hung test
PATIENCE = 60.0
#: a module no chain of the repository imports and nothing imported before: it notes the pid of each process that
#: imports it (executes it), one line each, and where its output goes (a worker's probe child's: nowhere)
MARKER = """
import os

with open(os.environ["SCALEOUT_MARKER"], "a") as noted:
    noted.write(f"{os.getpid()} {os.readlink('/proc/self/fd/1')}\\n")
"""
#: a chain importing the marker; its task notes its version and its process
MARKED_CHAIN = """
import os

import luigi
import scaleout_marker  # noqa: F401

from nectar import NectarTask


class MarkedTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        with open(os.environ["SCALEOUT_RAN"], "a") as ran:
            ran.write(f"{VERSION} {os.getpid()}\\n")
        with self.output().open("w") as out:
            out.write("marked\\n")
"""
BROKEN_CHAIN = """import os

raise RuntimeError("broken as it is imported")
"""
EXITING_CHAIN = """import sys

sys.exit(3)
"""


def marked(version: str) -> str:
    return f'{MARKED_CHAIN}\nVERSION = "{version}"\n'


def worker(processes: Processes, settings: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``nectar worker --workers 1`` (no clock: the scale-out layout), once it serves, its chains executed; with the
    marker module importable."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "scaleout_marker.py").write_text(MARKER)
    path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH", "")]))
    env = base_env() | settings_env(settings) | {"PYTHONPATH": path}
    env |= {"SCALEOUT_MARKER": str(tmp_path / "marker"), "SCALEOUT_RAN": str(tmp_path / "ran")}
    proc = processes.start("worker", [*NECTAR, "worker", "--workers", "1"], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    assert proc.poll() is None, log.read_text(errors="replace")
    return proc


def ended(runs: RunStore, chain: str, task: str, params: dict[str, str]) -> Run:
    """A run of ``task`` queued in the registry (as the API queues one), once it ended."""
    key = TargetKey("scaleout", chain, task, uuid.uuid4().hex)
    run_id = runs.submit(Run.new(key.path, "scaleout", chain, task, params, key.path, RetryPolicy(0, 0, 1)))[0].id

    def over() -> Run | None:
        now = runs.get(run_id)
        return now if now is not None and not now.state.active else None

    wait_until(lambda: over() is not None, timeout=PATIENCE)
    last = over()
    assert last is not None
    return last


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def importers(path: Path) -> list[str]:
    """The pids the marker noted, but a probe child's (its output sent to ``os.devnull``: one per worker start)."""
    noted = [line.split(" ", 1) for line in lines(path)]
    probes = [pid for pid, out in noted if out == os.devnull]
    assert len(probes) == 1, noted  # the worker's probe executed the chain file first, once
    return [pid for pid, out in noted if out != os.devnull]


def test_a_scale_out_workers_first_run_of_a_chain_finds_its_imports_made_and_a_changed_chain_runs_anew(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The marker module is imported by the worker, as it starts (after its probe child, whose import goes nowhere),
    and by no attempt: not by the first run's, nor by the run after the chain file changed, which runs the changed
    code (in an attempt process, not the worker). Before, the first run's attempt process imported it."""
    write_chain("scaleout/marked_chain", marked("v1"))
    pid = worker(processes, settings, tmp_path).pid
    assert importers(tmp_path / "marker") == [str(pid)]
    with open_run_store(settings) as runs:
        first = ended(runs, "marked_chain", "MarkedTask", {"n": "1"})
        assert first.state == RunState.DONE, first.error
        write_chain("scaleout/marked_chain", marked("v2"))
        second = ended(runs, "marked_chain", "MarkedTask", {"n": "2"})
        assert second.state == RunState.DONE, second.error
    ran = [line.split() for line in lines(tmp_path / "ran")]
    assert [version for version, _ in ran] == ["v1", "v2"], ran
    assert str(pid) not in {process for _, process in ran}, ran  # each ran in an attempt process
    assert importers(tmp_path / "marker") == [str(pid)], "an attempt imported the chain's module itself"


def test_a_chain_that_does_not_import_or_exits_does_not_stop_a_scale_out_worker(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A chain raising as it is imported and one calling ``sys.exit`` beside a good chain: the worker serves, the good
    chain's run is DONE, and the broken chain's run fails naming its file and
    line, as before."""
    write_chain("scaleout/broken_chain", BROKEN_CHAIN)
    write_chain("scaleout/exiting_chain", EXITING_CHAIN)
    write_chain("scaleout/marked_chain", marked("v1"))
    proc = worker(processes, settings, tmp_path)
    with open_run_store(settings) as runs:
        broken = ended(runs, "broken_chain", "AnyTask", {})
        good = ended(runs, "marked_chain", "MarkedTask", {"n": "1"})
    assert broken.state == RunState.FAILED
    assert "RuntimeError: broken as it is imported (broken_chain.py, line 3)" in str(broken.error), broken.error
    assert good.state == RunState.DONE, good.error
    assert proc.poll() is None, processes.log_of[proc.pid].read_text(errors="replace")
