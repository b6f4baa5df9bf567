"""``nectar download`` of a plain luigi task fetches every output its status lists, each under its own name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from harness import Processes, base_env, lifeline_env
from harness.processes import REPO
from nectar.keys import TargetKey
from tests.conftest import NECTAR, wait_until

#: a plain task with a list of two outputs under the local targets folder, and one with an output of each kind: one
#: there and one outside every folder the API serves
PAIRS_CHAIN = """
import os

import luigi

OUT = os.path.join(os.getcwd(), "local_targets", "pairs")


class PairTask(luigi.Task):
    def output(self):
        return [luigi.LocalTarget(f"{OUT}/first.txt"), luigi.LocalTarget(f"{OUT}/second.csv")]

    def run(self):
        for number, target in enumerate(self.output()):
            with target.open("w") as out:
                out.write(f"part {number}\\n")


class PartsTask(luigi.Task):
    def output(self):
        return [luigi.LocalTarget(f"{OUT}/parts/date={day}/part-0000.csv") for day in (1, 2)]

    def run(self):
        for target in self.output():
            with target.open("w") as out:
                out.write(target.path[-20:-14] + "\\n")


class HalfTask(luigi.Task):
    def output(self):
        return {"here": luigi.LocalTarget(f"{OUT}/half.txt"), "away": luigi.LocalTarget(os.environ["AWAY"])}

    def run(self):
        for target in self.output().values():
            with target.open("w") as out:
                out.write("half\\n")
"""


def test_download_saves_each_output_of_a_plain_task_under_its_own_name(processes: Processes, tmp_path: Path) -> None:
    """``PairTask``'s two files are saved as ``first.txt`` and ``second.csv`` in its key's folder, whole, and skipped
    by ``--resume``; ``PartsTask``'s two ``part-0000.csv`` (partitions) each under its partition's folder;
    ``HalfTask``'s row fails naming its output that has no link, and nothing of it is saved. Failed
    before: the first output alone was saved, as ``out.txt``; ``HalfTask``'s first output was saved all the same."""
    project = tmp_path / "project"
    (project / "chains" / "mine").mkdir(parents=True)
    (project / "chains" / "mine" / "pairs_chain.py").write_text(PAIRS_CHAIN)
    (project / "configuration").symlink_to(REPO / "configuration")
    away = tmp_path / "away.txt"
    env = {k: v for k, v in base_env().items() if not k.startswith(("NECTAR_", "AWS_"))}
    env |= {"ENV": "local", "AWAY": str(away)}
    api = f"http://127.0.0.1:{processes.nectar_serve(env, project).port}"
    keys = {}
    for task in ("PairTask", "PartsTask", "HalfTask"):
        queued = requests.post(f"{api}/api/chains/mine/pairs_chain/{task}", timeout=60).json()["data"]

        def done(url: str = queued["status_url"]) -> dict | None:
            status = requests.get(url, timeout=60).json()["data"]
            return status if status["job_status"] == "DONE" else None

        wait_until(done)
        keys[task] = TargetKey.parse(queued["key"]).digest

    def download(task: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [*NECTAR, "download", f"mine/pairs_chain/{task}", "--dest", str(tmp_path / task), "--server", api, *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")} | lifeline_env()
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    pairs = download("PairTask")
    assert pairs.returncode == 0 and "fetched 1, skipped 0, failed 0" in pairs.stdout, pairs.stdout + pairs.stderr
    folder = tmp_path / "PairTask" / keys["PairTask"]
    assert (folder / "first.txt").read_text() == "part 0\n"
    assert (folder / "second.csv").read_text() == "part 1\n"
    assert not (folder / "out.txt").exists()
    again = download("PairTask", "--resume")
    assert "fetched 0, skipped 1, failed 0" in again.stdout, again.stdout + again.stderr

    parts = download("PartsTask")  # two outputs of one name: each under its folder from where their paths part
    assert parts.returncode == 0 and "fetched 1, skipped 0, failed 0" in parts.stdout, parts.stdout + parts.stderr
    folder = tmp_path / "PartsTask" / keys["PartsTask"]
    assert [(folder / f"date={day}" / "part-0000.csv").read_text() for day in (1, 2)] == ["date=1\n", "date=2\n"]

    half = download("HalfTask")
    assert half.returncode == 1, half.stdout + half.stderr
    assert f"no download URL for its output {away}: not under a folder the service serves" in half.stdout, half.stdout
    assert not (tmp_path / "HalfTask" / keys["HalfTask"]).exists()
