"""A chain file whose import never ends (a share or database that does not answer, held here at a gate file the test
opens) does not stop the API: ``nectar serve``'s, and the API alone as the README's *Scaling out* runs it (gunicorn
with a ``nectar worker`` beside it). It starts and answers ``/healthz``, lists the chains (the hung one with why it is
not read yet), takes another chain's run to DONE, answers while a hung file saved after its start is probed, and lists
each hung chain as any other once its import ends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from harness import Processes, base_env, settings_env
from nectar.catalog import NOT_YET, UNENDED
from nectar.catalog.loader import AHEAD_BUDGET
from nectar.config import Settings
from tests.conftest import wait_until

#: a chain whose import waits for a gate file: a share, a database, a lock held elsewhere that does not answer
HUNG = """
import os
import time

from nectar import NectarTask

while not os.path.exists({gate!r}):
    time.sleep(0.05)


class {name}Task(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("{name}\\n")
"""
QUICK = """
from nectar import NectarTask


class QuickTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("quick\\n")
"""


def _listed(api: str) -> dict[str, tuple[str | None, list[str]]]:
    """``GET /api/chains``: by chain, its error and its tasks."""
    answer = requests.get(f"{api}/api/chains", timeout=120)
    assert answer.status_code == 200, answer.text
    return {
        f"{kind['name']}/{chain['name']}": (chain["error"], [task["name"] for task in chain["tasks"]])
        for kind in answer.json()["data"]
        for chain in kind["chains"]
    }


def _serve(processes: Processes, settings: Settings, tmp_path: Path) -> str:
    """``nectar serve`` of the test's chains (its own luigid, workers and clock); up once ``/healthz`` answers."""
    env = base_env() | settings_env(settings) | {"NECTAR_WORKERS": "1", "NECTAR_API_WORKERS": "2"}
    served = processes.nectar_serve(env, tmp_path, ready="/healthz")
    return f"http://127.0.0.1:{served.port}"


def _scale_out(processes: Processes, settings: Settings, tmp_path: Path) -> str:
    """The API alone under gunicorn (two workers), and a ``nectar worker`` beside it, as *Scaling out* runs them."""
    served = processes.nectar_api(settings, workers=2)
    processes.worker(base_env() | settings_env(settings), tmp_path, workers=1)
    return f"http://127.0.0.1:{served.port}"


@pytest.mark.parametrize("start", [_serve, _scale_out], ids=["serve", "scale-out"])
def test_a_chain_whose_import_hangs_stops_no_api(
    processes: Processes,
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    start: Callable[[Processes, Settings, Path], str],
) -> None:
    """Before, gunicorn's master executed every chain file in ``pre_fork`` before it forked a worker, unbounded: the
    API never answered while the gate was closed (the harness's start waited 60 s for ``/healthz``, then failed)."""
    first_gate, later_gate = tmp_path / "first-gate", tmp_path / "later-gate"
    write_chain("held/hung_chain", HUNG.format(gate=str(first_gate), name="Hung"))
    write_chain("quick/quick_chain", QUICK)
    try:
        api = start(processes, settings, tmp_path)
        assert requests.get(f"{api}/healthz", timeout=120).status_code == 200
        unended = f"{NOT_YET}: {UNENDED.format(budget=AHEAD_BUDGET)}"
        listed = _listed(api)
        assert listed.pop("held/hung_chain") == (unended, []), listed
        assert listed.pop("quick/quick_chain") == (None, ["QuickTask"]), listed
        assert listed and all(error is None and tasks for error, tasks in listed.values()), listed  # the examples

        queued = requests.post(f"{api}/api/chains/quick/quick_chain/QuickTask", timeout=120)
        assert queued.status_code == 202, queued.text
        status_url = queued.json()["data"]["status_url"]
        wait_until(lambda: requests.get(status_url, timeout=120).json()["data"]["job_status"] == "DONE")
        submitted = requests.post(f"{api}/api/chains/held/hung_chain/HungTask", timeout=120)
        assert submitted.status_code == 503 and submitted.headers["Retry-After"] == "2", submitted.text
        assert submitted.json()["message"] == f"catalog unavailable: chain held/hung_chain is {unended}", submitted.text

        # a hung file saved while serving: the request that finds it answers (after the budget at most) and lists it
        write_chain("held/later_chain", HUNG.format(gate=str(later_gate), name="Later"))
        later, _ = _listed(api)["held/later_chain"]
        assert later is not None and later.startswith(f"{NOT_YET}: "), later
        assert requests.get(f"{api}/healthz", timeout=120).status_code == 200

        first_gate.touch()  # the first import ends: the chain is read at a later request
        wait_until(lambda: _listed(api)["held/hung_chain"] == (None, ["HungTask"]))
        later_gate.touch()
        wait_until(lambda: _listed(api)["held/later_chain"] == (None, ["LaterTask"]))

        def accepted() -> requests.Response | None:  # by each API worker once it read the chain (its own probe ended)
            answer = requests.post(f"{api}/api/chains/held/hung_chain/HungTask", timeout=120)
            assert answer.status_code in (202, 503), answer.text
            return answer if answer.status_code == 202 else None

        status_url = wait_until(accepted).json()["data"]["status_url"]
        wait_until(lambda: requests.get(status_url, timeout=120).json()["data"]["job_status"] == "DONE")
    finally:
        first_gate.touch()
        later_gate.touch()
    written = [path.read_text() for path in settings.local_targets_dir.rglob("*") if path.is_file()]
    assert {"Hung\n", "quick\n"} <= set(written), written
