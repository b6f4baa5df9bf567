"""review17: what a run's attempt process finds imported when a ``nectar worker`` without ``--clock`` (the
scale-out layout: workers on their machines, ``nectar clock`` on others) hands it a run whose chain file imports
``requests``. Its worker forks it; what the worker imported, the chain's import does not import again on the way from
the claim to ``run()``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from harness import Processes, base_env, settings_env
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

#: a chain whose file imports requests, noting in the ledger, as it is executed, whether requests was imported in its
#: process before (a real module in sys.modules); its run notes the process it runs in
REQUESTING_CHAIN = """
import json
import os
import sys
import types

before = type(sys.modules.get("requests")) is types.ModuleType

import requests  # noqa: E402

from nectar import NectarTask  # noqa: E402

if "REVIEW17_LEDGER" in os.environ:  # the worker's processes (the test's own, which submits, is not asked)
    with open(os.environ["REVIEW17_LEDGER"], "a") as ledger:
        noted = {"pid": os.getpid(), "imported_before": before, "session": hasattr(requests, "Session")}
        ledger.write(json.dumps(noted) + "\\n")


class RequestingTask(NectarTask):
    def run(self):
        with open(os.environ["REVIEW17_LEDGER"], "a") as ledger:
            ledger.write(json.dumps({"pid": os.getpid(), "ran": True}) + "\\n")
        with self.output().open("w") as out:
            out.write("requested\\n")
"""


def test_the_first_run_of_a_chain_importing_requests_finds_it_imported_by_its_worker(
    settings: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The worker's first run: no spare has executed its chain file ahead, so the attempt executes it after the claim,
    on the way to ``run()``. On main the worker has imported requests (luigi.rpc imports it) and every process it forks
    has it; with ``requests`` deferred in ``nectar worker`` (wt63-memory's WORKER_UNUSED, nectar/cli/local.py's
    Deferral) that process imports it then: 132 modules, 29-31 ms of CPU in a process with the worker's imports
    (3 runs)."""
    ledger = tmp_path / "ledger.jsonl"
    ledger.touch()
    write_chain("review17/requesting_chain", REQUESTING_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    submission = nectar.submit("review17", "requesting_chain", "RequestingTask", {})
    assert submission.run is not None
    run_id = submission.run.id
    env = base_env() | settings_env(settings) | {"REVIEW17_LEDGER": str(ledger)}
    processes.worker(env, settings.data_dir.parent, workers=1)

    def ended() -> bool:
        run = nectar.runs.get(run_id)
        return run is not None and not run.state.active

    wait_until(ended)
    run = nectar.runs.get(run_id)
    assert run is not None and run.state == RunState.DONE, run
    noted = [json.loads(line) for line in ledger.read_text().splitlines()]
    ran = [entry["pid"] for entry in noted if entry.get("ran")]
    assert len(ran) == 1, noted
    executed = [entry for entry in noted if entry["pid"] == ran[0] and "imported_before" in entry]
    assert executed and all(entry["session"] for entry in executed), noted
    assert executed[0]["imported_before"], f"the run's process imported requests for its chain itself: {noted}"
