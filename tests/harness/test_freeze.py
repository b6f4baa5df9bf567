"""``harness.freeze``: a process frozen by the harness is stopped before the test goes on, so a signal sent to it then
stays pending, whatever the load. Sent SIGSTOP alone, a process that got no CPU since (``nectar serve``'s API on a
loaded machine, in ``tests/nectar/test_serve_stop.py``) is still running when the next signal comes: the kernel has
it take the lower-numbered one first (SIGTERM, 15, before SIGSTOP, 19), its handler notes it, and nothing is
pending once it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import freeze, pending, send, stopped

#: a process that notes a SIGTERM in the file it is given, says it is ready, then naps in short sleeps
TARGET = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, lambda *_: Path(sys.argv[1]).write_text("handled"))
print("ready", flush=True)
while True:
    time.sleep(0.001)
"""
#: a process that keeps its core busy until its stdin closes, having said it began
HOG = """
import select, sys
print("spinning", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    pass
"""


@pytest.fixture
def starved(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A target process that gets (almost) no CPU: on one core with a process spinning there, itself in the idle
    class (``SCHED_IDLE``); its pid and the file its SIGTERM handler would write. The spinner ends at the end."""
    core = {min(os.sched_getaffinity(0))}
    mark = tmp_path / "handled"
    pin = lambda: os.sched_setaffinity(0, core)  # noqa: E731
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(mark)], stdout=subprocess.PIPE, preexec_fn=pin)
    hog = subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=pin)
    try:
        assert target.stdout is not None and target.stdout.readline() == b"ready\n"
        assert hog.stdout is not None and hog.stdout.readline() == b"spinning\n"
        os.sched_setscheduler(target.pid, os.SCHED_IDLE, os.sched_param(0))
        yield target.pid, mark
    finally:
        assert hog.stdin is not None
        hog.stdin.close()
        hog.wait(timeout=60)
        target.kill()
        target.wait(timeout=60)


def test_a_signal_sent_to_a_frozen_process_stays_pending_though_it_had_no_cpu(starved: tuple[int, Path]) -> None:
    """Frozen by the harness, then sent SIGTERM: stopped, with SIGTERM pending, its handler not run."""
    target, mark = starved
    freeze(target)
    send(target, signal.SIGTERM)
    assert stopped(target)
    assert signal.SIGTERM in pending(target)
    assert not mark.exists()
    send(target, signal.SIGKILL)
