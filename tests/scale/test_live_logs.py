"""Live logs across machines: a task running on one node shows its output through every node's API."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import requests

from tests.faults.conftest import CHAIN_TYPE, waitfor
from tests.scale.conftest import Deployment

LIVE_CHAIN = '''"""A task that prints a line, then waits for the test's flag before it writes its output."""

import time
from pathlib import Path

import luigi

from nectar import NectarTask


class TalkingTask(NectarTask):
    flag = luigi.Parameter()

    def run(self):
        print("first line, printed while running", flush=True)
        while not Path(self.flag).exists():
            time.sleep(0.05)
        with self.output().open("w") as out:
            out.write("done\\n")
'''


def test_a_running_tasks_stdout_is_served_by_every_nodes_api(
    deployment: Deployment, tmp_path: Path, write_chain: Any
) -> None:
    write_chain(f"{CHAIN_TYPE}/live_chain", LIVE_CHAIN)
    deployment.settings = deployment.settings.replace(log_sync_interval=0.2)
    deployment.start_scheduler()
    nodes = deployment.start_nodes(2, workers=1)
    flag = tmp_path / "finish"
    url = f"{nodes[0].url}/api/chains/{CHAIN_TYPE}/live_chain/TalkingTask"
    accepted = requests.post(url, params={"flag": str(flag)}, timeout=60)
    assert accepted.status_code == 202, accepted.text
    status_path = accepted.json()["data"]["status_url"].split("/api/", 1)[1]

    def running_stdout(node: Any) -> str | None:
        status = requests.get(f"{node.url}/api/{status_path}", timeout=60).json()["data"]
        assert status["job_status"] in ("PENDING", "RUNNING"), status
        if status["job_status"] != "RUNNING" or not status.get("stdout_url"):
            return None
        answer = requests.get(status["stdout_url"], timeout=60)
        return answer.text if answer.status_code == 200 and "first line" in answer.text else None

    try:
        for node in nodes:  # one of them runs the task; the other has only the registry and the store
            text = waitfor(partial(running_stdout, node), 120, f"{node.name}'s API to show the live stdout")
            assert "first line, printed while running" in text
    finally:
        flag.touch()
    done = waitfor(
        lambda: (
            (s := requests.get(f"{nodes[1].url}/api/{status_path}", timeout=60).json()["data"])["job_status"] == "DONE"
            and s
        ),
        120,
        "the run to end DONE",
    )
    assert requests.get(done["stdout_url"], timeout=60).status_code == 200
