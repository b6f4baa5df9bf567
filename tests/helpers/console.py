"""What a user's own commands see: this checkout's packages without its chains folder (the README's
``.venv/bin/nectar``, whose ``sys.path`` starts with its ``bin``), and one run through a ``nectar worker``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import nectar
from harness import NECTAR, Processes, lifeline_env
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunState, RunStore, open_run_store
from tests.conftest import wait_until

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"


def packages_only(tmp_path: Path) -> Path:
    """A folder holding this checkout's packages (links), without its chains folder: a ``PYTHONPATH`` for them."""
    code = tmp_path / "code"
    code.mkdir()
    root = Path(nectar.__file__).resolve().parent.parent
    for name in ["nectar", "api", "harness", "app.py"]:
        (code / name).symlink_to(root / name)
    return code


def one_run_on_a_worker(
    processes: Processes, settings: Settings, argv: Sequence[str], env: Mapping[str, str], cwd: Path, key: TargetKey
) -> tuple[Run | None, subprocess.Popen[bytes]]:
    """A ``nectar worker`` (``argv``) started in ``cwd``, once it says its slots; the parameterless run of ``key``
    submitted to its registry, and the run as it ended (and the worker, whose log tells why)."""
    proc, _ = started_worker(processes, argv, env, cwd)
    with open_run_store(settings) as runs:
        return ended_run(runs, key), proc


def started_worker(
    processes: Processes, argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """A ``nectar worker`` (``argv``) started in ``cwd``, once it says its slots (said at the end of its loop's first
    pass: its registry read, lost runs reclaimed, a due run looked for) or ended, and its log."""
    proc = processes.start("worker", list(argv), dict(env), cwd)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "slot(s), registry" in log.read_text(errors="replace") or proc.poll() is not None)
    return proc, log


def ended_run(runs: RunStore, key: TargetKey) -> Run | None:
    """The parameterless run of ``key`` submitted to ``runs`` (one attempt), as it ended."""
    run = Run.new(key.path, key.chain_type, key.chain, key.task, {}, key.path, RetryPolicy(0, 0, 1))
    run_id = runs.submit(run)[0].id
    wait_until(lambda: (now := runs.get(run_id)) is not None and not now.state.active)
    return runs.get(run_id)


def done_by_a_command(
    processes: Processes,
    settings: Settings,
    how: str,
    env: Mapping[str, str],
    cwd: Path,
    key: TargetKey,
    flags: Sequence[str] = (),
) -> None:
    """The parameterless run of ``key`` made by a ``nectar worker`` (``how`` "worker": :func:`one_run_on_a_worker`)
    or by ``nectar run <its task> <flags>`` (any other ``how``), started in ``cwd`` with ``env``: ended DONE, else
    the assertion says why (the worker's log, the command's output)."""
    if how == "worker":
        argv = [*NECTAR, "worker", "--workers", "1"]
        ended, proc = one_run_on_a_worker(processes, settings, argv, env, cwd, key)
        assert ended is not None and ended.state == RunState.DONE, (
            ended and ended.error,
            processes.log_of[proc.pid].read_text(),
        )
        return
    argv = [*NECTAR, "run", f"{key.chain_type}/{key.chain}/{key.task}", *flags]
    result = subprocess.run(argv, env={**env, **lifeline_env()}, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "job_status: DONE" in result.stdout, result.stdout + result.stderr
