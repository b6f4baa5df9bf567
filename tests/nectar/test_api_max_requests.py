"""NECTAR_API_MAX_REQUESTS: how many requests a gunicorn worker of the API answers before a fresh one replaces it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nectar

#: gunicorn's configuration file, read as gunicorn reads it: in a process of its own (it sets the environment)
CONF = Path(nectar.__file__).parent / "gunicorn_conf.py"
READ = (
    "import json, runpy, sys; c = runpy.run_path(sys.argv[1]); "
    "print(json.dumps([c['max_requests'], c['max_requests_jitter']]))"
)


@pytest.mark.parametrize(("value", "max_requests", "jitter"), [(None, 20000, 2000), ("500", 500, 50), ("0", 0, 0)])
def test_the_recycle_bound_comes_from_the_environment(
    tmp_path: Path, value: str | None, max_requests: int, jitter: int
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NECTAR_API_MAX_REQUESTS"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)  # no folder of its own made for the metrics
    if value is not None:
        env["NECTAR_API_MAX_REQUESTS"] = value
    read = subprocess.run([sys.executable, "-c", READ, str(CONF)], env=env, capture_output=True, text=True, check=True)
    assert json.loads(read.stdout) == [max_requests, jitter]
