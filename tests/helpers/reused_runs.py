"""A ``nectar worker --workers 1`` whose attempt processes take run after run, and a parameterless run of a task
through it that names the process that ran it: what a test of what a reused attempt process keeps between runs
needs (round 66's modules, round 67's imports inside ``run()``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, open_run_store
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


def run_to_end(settings: Settings, runs: RunStore, key: TargetKey) -> tuple[Run, str, str]:
    """``key``'s task (parameterless, one attempt) run once to its end, its output removed first: the run, and the
    process that ran it and what it read, as its output says them (``<pid> <read>``; empty where it wrote nothing)."""
    output = settings.local_targets_dir / key.path
    output.unlink(missing_ok=True)
    run = Run.new(key.path, key.chain_type, key.chain, key.task, {}, key.path, RetryPolicy(0, 0, 1))
    run_id = runs.submit(run)[0].id
    wait_until(lambda: (now := runs.get(run_id)) is not None and not now.state.active)
    ended = runs.get(run_id)
    assert ended is not None
    pid, _, read = output.read_text().partition(" ") if output.exists() else ("", "", "")
    return ended, pid, read


def run_once(settings: Settings, runs: RunStore, key: TargetKey, log: Path) -> tuple[str, str]:
    """:func:`run_to_end`, DONE (else the worker's ``log`` in the failure): the process that ran it and what it read."""
    ended, pid, read = run_to_end(settings, runs, key)
    assert ended.state == RunState.DONE, (ended, log.read_text())
    return pid, read


def runs_until_reused(settings: Settings, runs: RunStore, key: TargetKey, log: Path, pid: str) -> list[tuple[str, str]]:
    """``key``'s task run again (:func:`run_once`) until a run lands in the process ``pid`` (a reused process takes a
    later run, not always the next one: a spare forked meanwhile may), at most 20 runs (a count, not a time); each
    run's process and what it read."""
    after = [run_once(settings, runs, key, log)]
    while after[-1][0] != pid and len(after) < 20:
        after.append(run_once(settings, runs, key, log))
    return after


def read_before_and_after(
    settings: Settings, processes: Processes, key: TargetKey, save: Callable[[], object]
) -> tuple[str, str, list[tuple[str, str]], Path]:
    """``key``'s task run by a :func:`one_slot_worker` whose attempt processes take up to 100 runs, ``save()`` (a
    module saved), then run again until a run lands in the process that ran it first (:func:`runs_until_reused`): that
    process, what it read first, each run's after the save, and the worker's log."""
    log = one_slot_worker(settings, processes, "100")
    with open_run_store(settings) as runs:
        pid, read = run_once(settings, runs, key, log)
        save()
        after = runs_until_reused(settings, runs, key, log, pid)
    assert after[-1][0] == pid, f"no run after the save was reused: {after}{os.linesep}{log.read_text()}"
    return pid, read, after, log
