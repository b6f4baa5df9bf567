"""A ``nectar worker --workers 1`` whose attempt processes take run after run, and a parameterless run of a task
through it that names the process that ran it: what a test of what a reused attempt process keeps between runs
needs (round 66's modules, round 67's imports inside ``run()``)."""

from __future__ import annotations

from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState
from nectar.registry.store import RunStore
from tests.conftest import wait_until


def one_slot_worker(settings: Settings, processes: Processes, runs_per_process: str) -> Path:
    """A ``nectar worker --workers 1`` started on ``settings``, its attempt processes taking up to
    ``runs_per_process`` runs, ready to claim; its log."""
    env = base_env() | settings_env(settings) | {"NECTAR_RUNS_PER_PROCESS": runs_per_process}
    proc = processes.start("worker", [*NECTAR, "worker", "--workers", "1"], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    return log


def run_once(settings: Settings, runs: RunStore, key: TargetKey, log: Path) -> tuple[str, str]:
    """``key``'s task (parameterless, one attempt) run to its end, DONE (else the worker's ``log`` in the failure),
    its output removed first; the process that ran it and what it read, as its output says them (``<pid> <read>``)."""
    output = settings.local_targets_dir / key.path
    output.unlink(missing_ok=True)
    run = Run.new(key.path, key.chain_type, key.chain, key.task, {}, key.path, RetryPolicy(0, 0, 1))
    run_id = runs.submit(run)[0].id
    wait_until(lambda: (now := runs.get(run_id)) is not None and not now.state.active)
    ended = runs.get(run_id)
    assert ended is not None and ended.state == RunState.DONE, (ended, log.read_text())
    pid, read = output.read_text().split()
    return pid, read
