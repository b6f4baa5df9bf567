"""gunicorn's USR2 (a new master executed from the old one, its documented way to upgrade in place) under ``nectar
api`` (and ``nectar serve``, the same prelude): refused in one line of the master's log, the master serving on with
its workers, no second master; a new master there ran the prelude's lost ``-c`` as code and died (NameError)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import NECTAR, Processes, answers, base_env, free_port, on_a_free_port, settings_env, wait_until
from harness.procfs import children
from nectar.config import Settings
from nectar.gunicorn_ext import USR2_REFUSED


def test_usr2_under_nectar_api_is_refused_and_the_master_serves_on(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    env = {**base_env(), **settings_env(settings), "NECTAR_API_WORKERS": "1"}

    def start(port: int) -> tuple[int, int]:
        proc = processes.start("api", [*NECTAR, "api", "--port", str(port)], env, tmp_path)
        processes.wait_up(proc, f"http://127.0.0.1:{port}/healthz", "nectar api", 200)
        return proc.pid, port

    master, port = on_a_free_port(start, free_port())
    workers = wait_until(lambda: children(master) or None)
    log = processes.log_of[master]

    os.kill(master, signal.SIGUSR2)

    said = wait_until(lambda: text if USR2_REFUSED in (text := log.read_text()) or "Traceback" in text else None)
    assert USR2_REFUSED in said and "Traceback" not in said, said
    wait_until(lambda: children(master) == workers)  # the process it forked for a new master is gone, no other
    assert answers(f"http://127.0.0.1:{port}/healthz") == 200
