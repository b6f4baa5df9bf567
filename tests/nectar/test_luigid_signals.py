"""luigid stopped between listening on its port and setting its own signal handlers exits 0, as after."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nectar import supervisor

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_luigid_stopped_before_it_sets_its_handlers_exits_0(signum: int) -> None:
    """What ``nectar serve`` and ``nectar scheduler`` start as luigid, stopped once its ``main`` runs but before
    luigi sets its handler (luigi's ``server.run`` binds the port first: a readiness check that sees the port held
    can signal it there), ends with status 0 and not killed by the signal (-15: a CI failure of the SIGHUP test)."""
    argv = [sys.executable, "-c", supervisor._LUIGID.format("tests.helpers.signals", "announce_then_wait")]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"waiting\n"
        proc.send_signal(signum)
        assert proc.wait() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
