"""``nectar worker`` says its start line ("worker N: k slot(s), registry R", what tests/helpers/console.py's
``started_worker`` and a user's log watch wait for) once it has read its registry and can claim: at the end of the
first pass of its loop, not before the loop's first read (CONTRIBUTING "(round 69, regstart)")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.registry.sqlite import SCHEMA_VERSION
from tests.helpers.console import started_worker
from tests.helpers.suitenectarB_runs import GUARD


def test_a_worker_that_cannot_read_its_registry_never_says_it_serves(
    processes: Processes, settings: Settings, tmp_path: Path
) -> None:
    """A registry whose file passes the open's check (this release's schema version) but has no table: the worker's
    first read fails (no such table), and the worker ends without having said its slots. Before, it said them first,
    and a caller waiting for the line took it for a worker serving."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(settings.registry_path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.close()
    chains = tmp_path / "no_chains"  # no chain file to execute ahead: the start alone
    chains.mkdir()
    env = base_env() | settings_env(settings) | {"NECTAR_CHAINS_DIR": str(chains)}

    proc, log = started_worker(processes, [*NECTAR, "worker"], env, settings.data_dir.parent)

    assert proc.wait(timeout=GUARD) != 0
    said = log.read_text(errors="replace")
    assert "no such table: runs" in said, said
    assert "slot(s), registry" not in said, said
