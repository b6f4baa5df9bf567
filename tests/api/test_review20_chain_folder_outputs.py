"""review20 (on main): a chain file that moves to its data folder at its top (``os.chdir(...)``, as a data scientist
does to keep the paths of a notebook's code relative) and names its output relatively (``LocalTarget("cd.txt")``).
Round 65 (gaps) holds that folder to the chain's runs: the run writes ``<folder>/cd.txt``, as ``python -m luigi``
does. The API gives its own working directory back as each execution of a chain ends, and then asks the task's
``output()`` and ``complete()`` in its own folder: the status lists ``<the API's folder>/cd.txt`` (not the file the
run made, no link though the folder is one of ``NECTAR_OUTPUT_ROOTS``), and a submission of the task DONE is queued
again (202, created) every time, where luigi counts it complete. Round 67 (compat): the API asks them in the folder
the chain's runs have (``luigi_state.asked_in_run_folder``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Processes, lifeline_env
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.nectar.test_review16_luigi_cfg import post
from tests.nectar.test_spare import ended

#: the chain: moves to the folder ``REVIEW20_DATA`` names, writes ``cd.txt`` there by its relative name
CHAIN = """
import os

import luigi

os.chdir(os.environ["REVIEW20_DATA"])


class CdTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget("cd.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(os.getcwd())
"""
CD = "/api/chains/review20/cd_chain/CdTask"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The chain's data folder, named to every process started after."""
    folder = tmp_path / "data-folder"
    folder.mkdir()
    monkeypatch.setenv("REVIEW20_DATA", str(folder))
    return folder


@pytest.fixture
def served(
    data: Path, settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> Iterator[tuple[int, Settings]]:
    """The API alone under gunicorn, the data folder one it serves files from; its port and settings."""
    write_chain("review20/cd_chain", CHAIN)
    served_settings = settings.replace(scheduler_url=luigid, output_roots=str(data))
    processes = Processes(tmp_path / "api-logs")
    yield processes.nectar_api(served_settings).port, served_settings
    processes.close()


def test_a_chain_that_moves_to_its_folder_has_its_outputs_listed_and_found_there(
    served: tuple[int, Settings],
    data: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """``python -m luigi`` makes ``<data>/cd.txt`` and counts the task complete at its second command (checked first);
    then through the API: the run DONE, the status lists ``<data>/cd.txt`` with a link, and a second submission is
    answered 200 DONE, no run queued. Failed before round 67 (compat): the status listed ``<the API's
    folder>/cd.txt``, "not under a folder the service serves", no link; past that, the second submission was queued
    again (202, created)."""
    port, settings = served
    chain = write_chain("review20/cd_chain", CHAIN)
    env = {**os.environ, "PYTHONPATH": str(chain.parent), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "CdTask", "--local-scheduler", "--no-lock"]
    for _ in range(2):
        said = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert (data / "cd.txt").exists(), said.stdout + said.stderr
    assert "complete ones were encountered" in said.stdout + said.stderr, said.stdout + said.stderr
    (data / "cd.txt").unlink()
    status, answer = post(port, CD, {})
    assert status == 202, answer
    start_worker(settings, workers=1)
    run = ended(closed_at_end(Nectar(settings)), answer["data"]["run_id"])
    assert run.state == RunState.DONE, run.error
    assert (data / "cd.txt").read_text() == str(data)
    with urllib.request.urlopen(answer["data"]["status_url"], timeout=120) as said_status:
        outputs = json.loads(said_status.read())["data"]["outputs"]
    assert [(each["target"], bool(each["url"])) for each in outputs] == [(str(data / "cd.txt"), True)], outputs
    status, answer = post(port, CD, {})
    assert status == 200 and answer["data"]["job_status"] == "DONE", answer
