"""Send what a task prints, logs and its subprocesses write into two log files.

Redirects the file descriptors 1 and 2 (so subprocesses and C extensions are caught), swaps
``sys.stdout``/``sys.stderr`` (so Python writers that replaced them are caught too) and adds a
root logging handler at INFO, and puts everything back afterwards.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()


@contextmanager
def redirect_output(stdout_path: Path, stderr_path: Path) -> Iterator[None]:
    """Append everything written to stdout and stderr, by any means, to the two files."""
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    _flush_std()
    out = open(stdout_path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    err = open(stderr_path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    saved_fds = (os.dup(1), os.dup(2))
    saved_streams = (sys.stdout, sys.stderr)
    root = logging.getLogger()
    saved_level = root.level
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = out, err
        root.addHandler(handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        yield
    finally:
        _flush_std()
        root.removeHandler(handler)
        root.setLevel(saved_level)
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        out.close()
        err.close()
