"""luigid stopped between listening on its port and setting its own signal handlers exits 0, as after."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import base_env, free_port, lifeline_env, waitfor
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


def test_luigid_stopped_while_it_loads_its_state_exits_0_and_keeps_it(tmp_path: Path) -> None:
    """luigi's ``Scheduler.load`` reads its state file inside ``except BaseException`` ("Starting from empty state"):
    a stop that raised ``SystemExit`` there was swallowed, and luigid ran on, its state empty (the stop lost, and
    the saved state written over by its next stop). The state file is a FIFO here, held open and empty: luigid is
    inside that read when it is signalled (the FIFO's writer opens once luigid opens it to read)."""
    data_dir = tmp_path / "data"
    state = data_dir / "luigid" / "state.pickle"
    state.parent.mkdir(parents=True)
    os.mkfifo(state)
    argv = supervisor.luigid_command("127.0.0.1", free_port(), data_dir)
    env = {**base_env(), **lifeline_env(), "NECTAR_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writer = None
    try:
        writer = waitfor(lambda: _opened_by_its_reader(state, proc), 60, "luigid to open its state to read it")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0  # a deadline for a hung test only: it ran on as a luigid before
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
        _, said = proc.communicate()
    assert b"Starting from empty state" not in said, said.decode()


def _opened_by_its_reader(fifo: Path, proc: subprocess.Popen[bytes]) -> int | None:
    """The FIFO's end to write to, once ``proc`` opened it to read (None before); fails if ``proc`` ended first."""
    assert proc.poll() is None, f"luigid exited with code {proc.returncode} before it read its state"
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:  # ENXIO: no reader yet
        if exc.errno != errno.ENXIO:
            raise
        return None
