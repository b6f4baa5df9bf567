"""review18: ``nectar download`` says why a DONE output it cannot fetch has no link, as the status it read says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from harness import Processes, base_env, lifeline_env
from harness.processes import REPO
from tests.conftest import NECTAR, wait_until
from tests.nectar.test_review18_cli_location import PLAIN_CHAIN


def test_download_names_why_a_done_output_has_no_link(processes: Processes, tmp_path: Path) -> None:
    """A plain luigi task writing its own ``LocalTarget`` outside ``local_targets/`` and ``NECTAR_OUTPUT_ROOTS`` (as
    luigi's examples write to ``/tmp``), run by ``nectar serve``: DONE, its status's ``resource_url`` null and its
    ``resource_note`` saying why. ``nectar download`` of the task fails that row (exit 1) and should say that why;
    on main it says "no download URL: the key is DONE now", which names no cause (a DONE key is what it fetches)."""
    project = tmp_path / "project"
    (project / "chains" / "review18").mkdir(parents=True)
    (project / "chains" / "review18" / "plain_chain.py").write_text(PLAIN_CHAIN)
    (project / "configuration").symlink_to(REPO / "configuration")
    out = tmp_path / "outputs"
    out.mkdir()
    env = {k: v for k, v in base_env().items() if not k.startswith(("NECTAR_", "AWS_"))}
    env |= {"ENV": "local", "REVIEW18_OUT": str(out)}
    served = processes.nectar_serve(env, project)
    api = f"http://127.0.0.1:{served.port}"
    queued = requests.post(f"{api}/api/chains/review18/plain_chain/PlainTask", timeout=60).json()["data"]

    def done() -> dict | None:
        status = requests.get(queued["status_url"], timeout=60).json()["data"]
        return status if status["job_status"] == "DONE" else None

    status = wait_until(done)
    assert status["resource_url"] is None and status["resource_note"], status

    cli = subprocess.run(
        [*NECTAR, "download", "review18/plain_chain/PlainTask", "--dest", str(tmp_path / "got"), "--server", api],
        env={k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")} | lifeline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert status["resource_note"] in cli.stdout + cli.stderr, cli.stdout + cli.stderr
