"""What a registry test and the processes it starts share, importable at the cost of the registry alone: a child
process that took these from the test modules (``tests/nectar/test_runs.py``, ``test_sqlite_writers.py``,
``test_sqlite_checkpoints.py``) imported pytest, hypothesis and the suite's conftest with them, ~0.6 s of CPU a
process on top of the ~0.9 s its own imports cost (CONTRIBUTING "(round 68, suitenectarB)")."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from nectar.registry import RetryPolicy, Run

#: a target key's digest, the same for every run :func:`new_run` makes
DIGEST = "0123456789abcdef0123456789abcdef"
#: the number of ``fcntl`` in ``/proc/<pid>/task/<tid>/syscall``
FCNTL = 25 if os.uname().machine == "aarch64" else 72
#: the repository's root (where a process of a test imports ``tests`` from)
REPOSITORY = Path(__file__).resolve().parents[2]
#: a hang guard, seconds
GUARD = 60.0
#: a process that prints the pid of another process holding a lock on the file at ``argv[1]`` (``F_GETLK`` of a write
#: lock of the whole file: what SQLite looks at as it opens a WAL index, to learn whether it is the first), or None
LOCK_HOLDER = (
    "import os, sys; from nectar.registry.sqlite import turn_holder; "
    "print(turn_holder(os.open(sys.argv[1], os.O_RDONLY)))"
)


def new_run(n: int = 0, policy: RetryPolicy | None = None) -> Run:
    return Run.new(
        f"chains/t/c_chain/ATask/{DIGEST}/out.txt#{n}", "t", "c_chain", "ATask", {"n": str(n)}, f"ATask_{n}", policy
    )


def waiting_in_the_kernel(path: Path) -> bool:
    """Whether a thread of this process waits in the kernel's queue of the write turn of the registry at ``path``: in
    ``fcntl(fd, F_SETLKW, ...)`` on a descriptor of ``<path>-writer`` (its ``/proc/self/task/<tid>/syscall``)."""
    turn = os.path.realpath(f"{path}-writer")
    for tid in os.listdir("/proc/self/task"):
        try:
            number, fd, cmd = Path(f"/proc/self/task/{tid}/syscall").read_text().split()[:3]
            if number == str(FCNTL) and int(cmd, 16) == fcntl.F_SETLKW:
                return os.path.realpath(f"/proc/self/fd/{int(fd, 16)}") == turn
        except (OSError, ValueError):
            continue
    return False


def lock_holder_seen_by_another_process(path: Path) -> str:
    argv = [sys.executable, "-c", LOCK_HOLDER, str(path)]
    seen = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=GUARD, cwd=REPOSITORY)
    return seen.stdout.strip()
