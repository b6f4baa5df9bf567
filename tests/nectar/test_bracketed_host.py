"""An IPv6 address given in brackets (``--host [::1]``, as a URL writes it, and as ``nectar.config.host_port`` takes
it) is the address the API's socket is bound to: ``nectar api`` and ``nectar serve`` bind the port themselves and
hand it to gunicorn, and their bind looked the bracketed text up as a host name ("cannot listen on [::1]:5000 for the
API, --port: Name or service not known", exit 2), where gunicorn's own bind had taken it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness import NECTAR, Processes, answers, base_env, exited_starting, on_a_free_port, settings_env, wait_until
from nectar import ports
from nectar.config import Settings


@pytest.mark.parametrize("host", ["[::1]", "::1"])
def test_listen_takes_an_ipv6_address_in_brackets(host: str) -> None:
    with ports.listen(host, 0, "the API, --port") as bound:
        assert bound.getsockname()[0] == "::1"


def test_nectar_api_serves_on_a_bracketed_ipv6_host(settings: Settings, processes: Processes, tmp_path: Path) -> None:
    env = base_env() | settings_env(settings)

    def start(port: int) -> int:
        """``nectar api`` on ``port``, answering: the harness's pick, another if it was taken since (PortTaken)."""
        proc = processes.start("api", [*NECTAR, "api", "--host", "[::1]", "--port", str(port)], env, tmp_path)

        def up() -> bool:
            if proc.poll() is not None:
                raise exited_starting("nectar api exited", processes.log_of[proc.pid].read_text())
            return answers(f"http://[::1]:{port}/healthz") == 200

        wait_until(up)
        return port

    on_a_free_port(start)


def test_serve_with_both_hosts_in_brackets_comes_up_there(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """``--host [::1] --scheduler-host [::1]``: the API's socket and luigid's ``--address`` (tornado looks the
    bracketed text up as a host name: luigid's traceback, then serve stopped everything) both on ``::1``."""
    env = {**base_env(), **settings_env(settings.replace(scheduler_url=None)), "NECTAR_API_WORKERS": "1"}
    args = ["--host", "[::1]", "--scheduler-host", "[::1]", "--workers", "1"]

    served = processes.nectar_serve(env, tmp_path, args, host="::1")

    assert answers(f"http://[::1]:{served.port}/api/chains", timeout=60) == 200
    assert answers(f"http://[::1]:{served.scheduler_port}/api/worker_list", timeout=60) in (200, 403)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0
