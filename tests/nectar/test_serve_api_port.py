"""``nectar serve`` binds its API's port itself, as ``nectar api`` does, and hands it to gunicorn (systemd's socket
activation: ``LISTEN_FDS``): from its check on, no other program can take the port. gunicorn bound its own, so a port
taken between serve's check and gunicorn's bind was told after the fact (``Supervisor.refuse_a_taken_port``)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness import Processes, children, wait_until
from nectar import ports
from nectar.config import Settings
from tests.nectar.test_role_port_race import _answer, taking
from tests.nectar.test_serve_port_race import served_at_the_gate, served_empty


def test_serve_holds_its_apis_port_from_its_check_on(settings: Settings, processes: Processes, tmp_path: Path) -> None:
    started = served_at_the_gate(settings, processes, tmp_path)  # the API's master loads the app, before a bind
    port = started.ports["api"]

    with pytest.raises(OSError) as refused:
        taking(port).close()
    assert refused.value.errno == errno.EADDRINUSE

    os.close(started.writer)
    with served_empty(started.tokens):
        answer = wait_until(lambda: _answer(f"http://127.0.0.1:{port}/api/chains"))
        assert answer.status_code == 200, started.log.read_text()
        wait_until(lambda: "Datanectar is up" in started.log.read_text())
    [api] = [pid for pid in children(started.proc.pid) if ports.held_by(port, [pid])]  # gunicorn's master alone
    assert not ports.held_by(port, [started.proc.pid])  # serve kept no copy: the port goes with its API
    assert "an API process (gunicorn) of a nectar serve" in ports.describe_holder(port)
    assert api != started.proc.pid
