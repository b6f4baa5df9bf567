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


def status_once_stopped_waiting(code: str, signum: int) -> int:
    """The exit status of ``python -c code`` (a stand-in that says ``waiting`` once it waits), signalled ``signum``
    once it said so."""
    env = {**os.environ, **lifeline_env()}  # dies with this process (harness/lifeline.py)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"waiting\n"
        proc.send_signal(signum)
        return proc.wait(timeout=60)  # a deadline for a hung test only
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_luigid_stopped_before_it_sets_its_handlers_exits_0(signum: int) -> None:
    """What ``nectar serve`` and ``nectar scheduler`` start as luigid, stopped once its ``main`` runs but before
    luigi sets its handler (luigi's ``server.run`` binds the port first: a readiness check that sees the port held
    can signal it there), ends with status 0 and not killed by the signal (-15: a CI failure of the SIGHUP test)."""
    code = supervisor._LUIGID.format("tests.helpers.signals", "announce_then_wait")
    assert status_once_stopped_waiting(code, signum) == 0


#: the stand-in of the test above, whose stop is taken by a thread of its own (its main thread blocks the signals):
#: its main thread's wait is not interrupted, as when the stop comes between the stand-in's last look at the signals
#: and its wait
STOP_TAKEN_ELSEWHERE = """
import signal, threading
import nectar.lifeline as life
from tests.helpers.signals import announce_then_wait
life.stops_exit_until_handled()
threading.Thread(target=threading.Event().wait, daemon=True).start()  # takes the signals: it does not block them
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
announce_then_wait()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_stand_in_ends_on_a_stop_that_does_not_interrupt_its_wait(signum: int) -> None:
    """The stand-in's wait ends on a stop whose handler is due but has not run yet: a stop that came just before its
    ``signal.pause()`` (after its last look at the signals) left it paused for good, and the test above hung (800 s
    under load, then a second SIGTERM ended it with status 0)."""
    assert status_once_stopped_waiting(STOP_TAKEN_ELSEWHERE, signum) == 0


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
