"""``nectar api`` and ``nectar scheduler``, the commands that start one part, refuse a port another program takes as
``nectar serve`` does: the check's one line naming the port and its holder, exit 2. ``api`` binds the port itself
before it becomes gunicorn, which takes that socket: no other program can take it meanwhile. ``scheduler`` checks it
before it becomes luigid; taken between the check and luigid's bind, luigid says the check's line, exit 2."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest
import requests

from harness import NECTAR, Processes, base_env, free_port, settings_env, wait_until
from nectar import ports
from nectar.config import Settings
from tests.nectar.test_serve_port_race import reader_waits, refused_at_the_gate, served_empty


def gated(settings: Settings, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment of a part that reads its tokens file before it binds (gunicorn's master loading the app,
    luigid's guard): a FIFO there holds it until the test lets it go; and the FIFO."""
    tokens = tmp_path / "tokens"
    os.mkfifo(tokens)
    return {**base_env(), **settings_env(settings), "NECTAR_API_TOKENS_FILE": str(tokens)}, tokens


def taking(port: int) -> socket.socket:
    """Another program's socket listening on ``port`` (``OSError`` where it cannot have it)."""
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
    except OSError:
        other.close()
        raise
    return other


def test_nectar_scheduler_names_a_port_taken_before_luigids_bind_in_the_checks_line(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """On main luigid said ``luigid: cannot listen: Address already in use``, exit 1."""
    env, tokens = gated(settings, tmp_path)
    port = free_port()
    argv = [*NECTAR, "scheduler", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port)]
    proc = processes.start("scheduler", [*argv, "--data-dir", str(tmp_path / "data")], env, tmp_path)
    refused_at_the_gate(proc, processes.log_of[proc.pid], tokens, port, "luigid, --scheduler-port")


def test_nectar_api_holds_its_port_from_its_check_on(settings: Settings, processes: Processes, tmp_path: Path) -> None:
    """On main the other program took the port while gunicorn's master loaded the app; gunicorn then tried 5 times
    to bind it, a second apart, and exited 1 without naming the holder."""
    env, tokens = gated(settings, tmp_path)
    port = free_port()
    argv = [*NECTAR, "api", "--host", "127.0.0.1", "--port", str(port), "--api-workers", "1"]
    proc = processes.start("api", argv, env, tmp_path)
    log = processes.log_of[proc.pid]

    def gate() -> int | None:
        assert proc.poll() is None, log.read_text()
        return reader_waits(tokens)

    writer = wait_until(gate)  # gunicorn's master loads the app, before it would bind
    with pytest.raises(OSError) as refused:
        taking(port).close()
    assert refused.value.errno == errno.EADDRINUSE
    os.close(writer)
    with served_empty(tokens):
        answer = wait_until(lambda: _answer(f"http://127.0.0.1:{port}/api/chains"))
        assert answer.status_code == 200, log.read_text()
        assert ports.held_by(port, [proc.pid]), ports.describe_holder(port)  # gunicorn's master: this very process


def _answer(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=10, headers={"Connection": "close"})
    except (requests.ConnectionError, requests.Timeout):  # not yet, or slow on a loaded machine: asked again
        return None
