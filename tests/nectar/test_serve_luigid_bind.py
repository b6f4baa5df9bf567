"""luigid under ``nectar serve`` whose bind is refused says so itself, in one line, whatever the supervisor finds when
it looks at the port after luigid's death: a holder gone by then (it held the port a moment) left the user with
``luigid exited with code 1`` and no cause, as luigid kept quiet under serve."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from harness import Processes, alive, freeze, wait_until
from harness.procfs import arguments, children
from nectar.config import Settings
from tests.nectar.test_serve_port_race import served_at_the_gate, served_empty


def test_luigid_whose_port_was_taken_a_moment_says_why_it_exited(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    started = served_at_the_gate(settings, processes, tmp_path)
    proc, log, writer = started.proc, started.log, started.writer
    luigid = wait_until(lambda: next((pid for pid in children(proc.pid) if "luigid" in arguments(pid)), None))
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("127.0.0.1", started.ports["luigid"]))
    other.listen()
    freeze(proc.pid)  # the supervisor looks at the port only once the other program let it go
    try:
        os.close(writer)
        with served_empty(started.tokens):
            wait_until(lambda: not alive(luigid))  # its bind refused, it exited (not reaped: serve is stopped)
            other.close()
            os.kill(proc.pid, signal.SIGCONT)
            code = proc.wait(timeout=120)
    finally:
        other.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
    said = log.read_text()
    assert code == 1, said
    assert "luigid, --scheduler-port: cannot listen: Address already in use" in said, said
    assert "Traceback" not in said, said
