"""The benchmarks run the API, and the hello world it is compared with, on the service's own processes and threads
(the defaults of ``NECTAR_API_WORKERS`` and ``NECTAR_API_THREADS``, what ``nectar serve`` starts): one value, not a
number of the benchmarks' own."""

from __future__ import annotations

from pathlib import Path

import pytest

import nectar.config
from benchmarks.coldstart import hello_argv
from benchmarks.harness import Cluster, Processes
from harness import free_port, waitfor

#: defaults the service might have had: neither the number the benchmarks once wrote (2 workers, 8 threads) nor 1
DEFAULTS = {"NECTAR_API_WORKERS": 3, "NECTAR_API_THREADS": 5}


@pytest.fixture
def other_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, default in DEFAULTS.items():
        _, least, most = nectar.config.GUNICORN_WHOLES[var]
        monkeypatch.setitem(nectar.config.GUNICORN_WHOLES, var, (default, least, most))


@pytest.mark.usefixtures("other_defaults")
def test_the_api_and_its_hello_world_run_on_the_services_defaults(tmp_path: Path) -> None:
    argv = hello_argv(free_port())
    assert argv[argv.index("--workers") + 1] == "3" and argv[argv.index("--threads") + 1] == "5"

    processes = Processes(tmp_path / "logs")
    cluster = Cluster(processes, tmp_path / "cluster")
    try:
        url = cluster.start_api(app="benchmarks.baseline_app:create_app()")
        assert cluster.api_size(url) == 3
        waitfor(lambda: len(cluster.api_workers(url)) == 3, 60, "gunicorn's 3 workers")
        environ = Path(f"/proc/{cluster.apis[url].pid}/environ").read_bytes().split(b"\0")
        assert b"NECTAR_API_THREADS=5" in environ
    finally:
        processes.close()
