"""review20 (a guard, made the lead's in round 66): a chain file saved while the API serves, whose import takes a few
seconds (a heavy library: pandas, scikit-learn, a client that dials out as it is imported, on a loaded machine), is
read in the API through a probe first (round 66, apistart: a file whose import never ends must not hang a request).
A submission of its task while the probe runs is told to ask again (503, ``Retry-After``, naming the import under
way), never that the task does not exist: wt66-apistart answered 404 "not executed here yet", a final status for a
client, for a task that exists. Once the probe ends, the next submission is 202 and the listing names the task."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import requests

from harness import Processes
from nectar.config import Settings
from tests.conftest import wait_until

#: a chain whose import takes 3 s: longer than the 2 s a probe is given, as a heavy import is on a loaded machine
CHAIN = """
import time

import luigi

time.sleep(3)  # stands for a heavy import (pandas, scikit-learn)


class HeavyTask(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"/nonexistent-review20/heavy-{self.n}")
"""


def test_a_slow_chain_file_saved_while_the_api_serves_is_told_to_ask_again_then_taken(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The API alone under gunicorn, one worker; the chain saved after it answered a listing; a POST of its task at
    once: 503 with ``Retry-After`` and "catalog unavailable: chain review20/heavy_chain is not executed here yet"; the
    same POST asked again until it is taken: 202, and the listing names the task. (On wt66-apistart: 404.)"""
    processes = Processes(tmp_path / "api-logs")
    try:
        port = processes.nectar_api(settings).port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains", timeout=120) as listed:
            assert "heavy_chain" not in listed.read().decode()
        write_chain("review20/heavy_chain", CHAIN)
        task = f"http://127.0.0.1:{port}/api/chains/review20/heavy_chain/HeavyTask"
        first = requests.post(task, json={"n": 1}, timeout=120)
        assert first.status_code == 503 and first.headers["Retry-After"] == "2", first.text
        assert first.json()["message"].startswith(
            "catalog unavailable: chain review20/heavy_chain is not executed here yet: "
        ), first.text

        def taken() -> bool:
            answer = requests.post(task, json={"n": 1}, timeout=120)
            assert answer.status_code in (202, 503), answer.text
            return answer.status_code == 202

        wait_until(taken)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains/review20/heavy_chain", timeout=120) as chain:
            assert "HeavyTask" in json.dumps(json.loads(chain.read()))
    finally:
        processes.close()
