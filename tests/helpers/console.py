"""What a user's own commands see: this checkout's packages without its chains folder (the README's
``.venv/bin/nectar``, whose ``sys.path`` starts with its ``bin``), and one run through a ``nectar worker``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import nectar
from harness import Processes
from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import RetryPolicy, Run, RunStore, open_run_store
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
    """A ``nectar worker`` (``argv``) started in ``cwd``, once it says its slots (or ended), and its log."""
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
