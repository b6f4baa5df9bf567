"""review20 (a guard, passing on main): a chain file saved while the API serves, whose import takes a few seconds (a
heavy library: pandas, scikit-learn, a client that dials out as it is imported, on a loaded machine), is live on the
first submission after it is saved, as the README's "Save the file and it is live" says: the submission waits for the
import and is answered 202. wt66-apistart (round 66) reads a changed or new chain file in the API through a probe of
2 s (``ChainCatalog.refresh_ahead(AHEAD_BUDGET, reads_wait=True)`` in gunicorn's ``pre_fork``): such a file's tasks are
answered 404 "not executed here yet" until the probe ends, a final status for a client (a 404 is no "try later"), for
a task that exists."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

from harness import Processes
from nectar.config import Settings
from tests.nectar.test_review16_luigi_cfg import post

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


def test_a_slow_chain_file_saved_while_the_api_serves_is_live_on_the_first_submission(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The API alone under gunicorn, one worker; the chain saved after it answered a listing; a POST of its task: 202,
    queued, and the listing names the task. (On wt66-apistart: 404, "chain review20/heavy_chain is not executed here
    yet".)"""
    processes = Processes(tmp_path / "api-logs")
    try:
        port = processes.nectar_api(settings).port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains", timeout=120) as listed:
            assert "heavy_chain" not in listed.read().decode()
        write_chain("review20/heavy_chain", CHAIN)
        status, answer = post(port, "/api/chains/review20/heavy_chain/HeavyTask", {"n": 1})
        assert status == 202, answer
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains/review20/heavy_chain", timeout=120) as chain:
            assert "HeavyTask" in json.dumps(json.loads(chain.read()))
    finally:
        processes.close()
