"""The faults' freeze of a service process that must leave the registry writable: never inside its write turn."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from harness import freeze, lifeline_env
from nectar.registry import sqlite
from nectar.registry.sqlite import SQLiteRunStore
from tests.faults.conftest import frozen_outside_turn, waitfor
from tests.faults.test_frozen_steps import stopped

#: a process that enters a write transaction of the registry (its turn taken) and says so, leaves it once the gate
#: file exists and says so, then waits until it is killed
IN_TURN = """
import os, sys, time
from nectar.registry.sqlite import SQLiteRunStore
registry, gate = sys.argv[1], sys.argv[2]
with SQLiteRunStore(registry)._db():
    print("inside", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.01)
print("out", flush=True)
time.sleep(3600)
"""


def turn_holder(registry: Path) -> int | None:
    """The pid holding the registry's write turn (F_GETLK on its lock file), or None."""
    fd = os.open(f"{registry}-writer", os.O_RDONLY)
    try:
        return sqlite.turn_holder(fd)
    finally:
        os.close(fd)


def test_a_process_in_its_write_turn_is_frozen_only_once_it_left_it(tmp_path: Path) -> None:
    """Asked to freeze a process while it holds the registry's write turn, the helper stops and continues it until it
    is stopped outside the turn (a plain SIGSTOP at that moment left it holding the turn, every writer waiting)."""
    registry, gate = tmp_path / "runs.sqlite3", tmp_path / "gate"
    with SQLiteRunStore(registry):  # the schema written
        pass
    argv = [sys.executable, "-c", IN_TURN, str(registry), str(gate)]
    writer = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**os.environ, **lifeline_env()})
    stops: list[int] = []

    def counted(pid: int) -> None:
        stops.append(pid)
        freeze(pid)

    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"inside\n"
        assert turn_holder(registry) == writer.pid
        freezing = threading.Thread(target=frozen_outside_turn, args=(writer.pid, registry, counted))
        freezing.start()
        waitfor(lambda: len(stops) >= 2 or not freezing.is_alive(), 60, "a second stop, or the helper's return")
        assert freezing.is_alive(), "it returned with the process stopped in its turn"
        gate.touch()
        freezing.join(60)
        assert not freezing.is_alive() and stopped(writer.pid)
        assert turn_holder(registry) is None
    finally:
        writer.kill()  # SIGKILL ends a stopped process too
        writer.wait(timeout=60)
