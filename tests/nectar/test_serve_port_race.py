"""A port ``nectar serve`` checked free, taken by another program before the part that listens there binds it (the
API under gunicorn, luigid): the user gets the check's own line naming the port, the part and its holder, exit 2, and
nothing of serve is left running."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import NECTAR, Processes, alive, base_env, free_port, settings_env, wait_until
from harness.processes import TOKEN_VAR
from harness.procfs import carrying
from nectar.config import Settings

#: the part whose port the other program takes -> what the check calls that port
WHAT = {"api": "the API, --port", "luigid": "luigid, --scheduler-port"}


def reader_waits(fifo: Path) -> int | None:
    """The write end of ``fifo`` once a reader has it open (a writer's non-blocking open fails until then)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


@contextmanager
def served_empty(fifo: Path) -> Iterator[None]:
    """Each later reader of ``fifo`` reads it empty (a writer opened and closed), until the block ends."""
    done = threading.Event()

    def serve() -> None:
        while not done.wait(0.01):
            writer = reader_waits(fifo)
            if writer is not None:
                os.close(writer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@dataclass
class AtTheGate:
    """``nectar serve`` started, its ports checked, its parts held before they bind (:func:`served_at_the_gate`)."""

    proc: subprocess.Popen[bytes]
    log: Path
    #: part -> the port it listens on
    ports: dict[str, int]
    #: the FIFO the parts read before they bind, and its write end: closing it lets the first go on
    tokens: Path
    writer: int


def served_at_the_gate(settings: Settings, processes: Processes, tmp_path: Path) -> AtTheGate:
    """``nectar serve`` once it checked its ports, the API's master (loading the app) and luigid's guard held at
    the tokens file they read before they bind (a FIFO, until its writer closes it): the window between the check and
    a part's bind widened for another program to take a port."""
    tokens = tmp_path / "tokens"
    os.mkfifo(tokens)
    ports = {"api": free_port(), "luigid": free_port()}
    env = {**base_env(), **settings_env(settings), "NECTAR_API_TOKENS_FILE": str(tokens), "NECTAR_API_WORKERS": "1"}
    argv = [*NECTAR, "serve", "--port", str(ports["api"]), "--scheduler-port", str(ports["luigid"])]
    proc = processes.start("serve", argv, env, tmp_path)
    log = processes.log_of[proc.pid]

    def gate() -> int | None:
        assert proc.poll() is None, log.read_text()
        return reader_waits(tokens)

    return AtTheGate(proc, log, ports, tokens, wait_until(gate))


@pytest.mark.parametrize("part", ["luigid"])  # the API's port serve binds itself: test_serve_api_port
def test_a_port_taken_between_the_check_and_the_parts_bind_is_named_in_one_line(
    settings: Settings, processes: Processes, tmp_path: Path, part: str
) -> None:
    started = served_at_the_gate(settings, processes, tmp_path)
    refused_at_the_gate(started.proc, started.log, started.tokens, started.ports[part], WHAT[part], started.writer)
    wait_until(lambda: not any(alive(pid) for pid in carrying(TOKEN_VAR, processes.token)))


def refused_at_the_gate(
    proc: subprocess.Popen[bytes], log: Path, tokens: Path, taken: int, what: str, writer: int | None = None
) -> None:
    """Once ``proc`` (logging to ``log``) waits at the gate of its ``tokens`` FIFO, its port checked free, another
    program (this test) takes port ``taken``, then the gate opens: ``proc`` ends with the check's own line naming
    the port, ``what`` listens there and its holder, exit 2, no traceback. ``writer``: the gate's write end, where
    the caller waited for it already (:func:`served_at_the_gate`)."""

    def gate() -> int | None:
        assert proc.poll() is None, log.read_text()
        return reader_waits(tokens)

    if writer is None:
        writer = wait_until(gate)  # the port checked free; the part waits at the gate, before its bind
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", taken))
        other.listen()
        os.close(writer)
        with served_empty(tokens):
            code = proc.wait(timeout=120)
        said = log.read_text()
        assert code == 2, said
        line = f"nectar: port {taken} ({what}) is in use by pid {os.getpid()} ("
        assert said.rstrip().splitlines()[-1].startswith(line), said
        assert "Traceback" not in said, said
    finally:
        other.close()
