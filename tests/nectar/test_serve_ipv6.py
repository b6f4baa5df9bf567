"""``nectar serve`` on an IPv6 host: up, and saying where."""

from __future__ import annotations

import signal
from pathlib import Path

import requests

from harness import Processes, base_env, settings_env, waitfor
from nectar.config import Settings


def test_serve_on_an_ipv6_host_comes_up_there_and_says_where(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """``--host ::1 --scheduler-host ::1``: gunicorn binds ``[::1]:port``, serve waits for its API and luigid at
    bracketed URLs and names them in its "up" line (it polled ``http://::1:5000/healthz``, no URL, and never came
    up), and the workers reach luigid there."""
    env = {**base_env(), **settings_env(settings.replace(scheduler_url=None)), "NECTAR_API_WORKERS": "1"}
    args = ["--host", "::1", "--scheduler-host", "::1", "--workers", "1"]

    served = processes.nectar_serve(env, tmp_path, args, host="::1")

    api = f"http://[::1]:{served.port}"
    assert requests.get(f"{api}/api/chains", timeout=60).status_code == 200
    path = processes.log_of[served.proc.pid]
    waitfor(lambda: "Datanectar is up" in path.read_text(), 60, "nectar serve to say it is up")  # after its API
    log = path.read_text()
    assert f"Datanectar is up: API {api}/api/chains" in log, log
    assert f"luigi scheduler http://[::1]:{served.scheduler_port};" in log, log
    assert requests.get(f"http://[::1]:{served.scheduler_port}/api/worker_list", timeout=60).status_code in (200, 403)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0
