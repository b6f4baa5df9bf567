"""Debian's packages some tests need (PostgreSQL, Chromium, strace), installed with apt-get when missing: CI runs as
root on a fresh machine with only Python. Two pytest-xdist workers may need one at the same moment, and apt-get
refuses to install while another holds dpkg's lock, so installs take turns under a lock file of our own; apt-get also
waits for dpkg's lock, should something else on the machine hold it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import lifeline_env

#: held while one of our processes installs
LOCK = Path(tempfile.gettempdir()) / "nectar-apt-get.lock"
#: how long one apt-get may take, waiting for dpkg's lock included (only a hung install reaches it)
APT_SECONDS = 900


class NotInstalled(RuntimeError):
    """apt-get could not install a package: its own message is in this one."""


def install(package: str, present: Callable[[], bool]) -> None:
    """Install Debian's ``package`` unless ``present()`` (asked again once it is our turn: another worker may have
    installed it meanwhile). Raises :class:`NotInstalled` naming the command and apt-get's error."""
    if present():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", **lifeline_env()}
    wait_for_dpkg = ["-o", f"DPkg::Lock::Timeout={APT_SECONDS}"]
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if present():
            return
        for argv in (
            ["apt-get", *wait_for_dpkg, "update"],
            ["apt-get", *wait_for_dpkg, "install", "-y", "--no-install-recommends", package],
        ):
            try:
                done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=APT_SECONDS, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise NotInstalled(f"cannot install {package}: `{' '.join(argv)}` could not run: {exc}") from exc
            if done.returncode != 0:
                raise NotInstalled(
                    f"cannot install {package}: `{' '.join(argv)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
                )
    if not present():
        raise NotInstalled(f"apt-get installed {package}, yet it is not where the tests look for it")
