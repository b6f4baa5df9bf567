"""review18: ``nectar worker`` started as the README's scale-out layout starts it, its runs at once from the
configuration table's variable."""

from __future__ import annotations

import os
import re

import pytest

from harness import Processes
from nectar.config import Settings
from tests.conftest import NECTAR, settings_env, wait_until

READY = re.compile(r"(\d+) slot\(s\), registry")


@pytest.mark.parametrize(("value", "said"), [("3", "3 slot(s)"), ("lots", "NECTAR_WORKERS")])
def test_nectar_worker_reads_nectar_workers(settings: Settings, processes: Processes, value: str, said: str) -> None:
    """A scale-out machine's env file sets ``NECTAR_WORKERS=3`` beside the registry's and luigid's variables, and runs
    ``nectar worker`` (the README's *Scaling out*): it executes three runs at once, as ``nectar serve`` would; a value
    it cannot take stops it in one line naming the variable, exit 2, as ``serve`` is stopped. On main the first starts
    with 1 slot and the second with 1 slot, the variable unread."""
    env = {**os.environ, **settings_env(settings), "NECTAR_WORKERS": value}
    proc = processes.start("worker", [*NECTAR, "worker"], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: READY.search(log.read_text(errors="replace")) or proc.poll() is not None)
    text = log.read_text(errors="replace")
    if value == "lots":
        assert proc.poll() == 2, text  # not started: exited, where main's worker runs on with 1 slot
        assert said in text, text
    else:
        found = READY.search(text)
        assert found is not None and f"{found.group(1)} slot(s)" == said, text
