"""Tests run in a given order in one pytest process of their own, as an xdist worker runs the files it is handed: what
one test leaves in its process is what the next one meets."""

from __future__ import annotations

import os
import subprocess
import sys

from harness import REPO, lifeline_env


def all_pass_in_this_order(*nodes: str) -> None:
    """Run ``nodes`` (pytest node ids) in this order in one new pytest process (no xdist); each must pass."""
    argv = [sys.executable, "-m", "pytest", *nodes, "-q", "-n0", "-p", "no:cacheprovider"]
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    ran = subprocess.run(argv, cwd=REPO, env={**env, **lifeline_env()}, capture_output=True, text=True, timeout=600)
    last = ran.stdout.splitlines()[-1] if ran.stdout else ""
    assert ran.returncode == 0 and f"{len(nodes)} passed" in last, ran.stdout[-3000:] + ran.stderr[-3000:]
