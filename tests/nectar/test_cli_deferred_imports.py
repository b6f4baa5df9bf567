"""The ``nectar`` commands of the registry and chains import luigi's and nectar's modules as a worker does
(``service_deferral`` in :mod:`nectar.cli.local`): without luigi.rpc's ``requests``, luigi.parameter's ``jsonschema``
or tenacity's tornado, which none of them uses (each was ~0.26 s of CPU at every such command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import base_env, settings_env
from nectar.config import Settings
from nectar.deferred_imports import WORKER_ABSENT, WORKER_UNUSED

#: the command run by ``nectar.cli.main`` in a fresh interpreter; then what of those modules it left imported
PROBE = """
import sys
from nectar.cli import main

main(sys.argv[1:])
print(sorted(name for name in {names!r} if name in sys.modules))
"""
KEY = "chains/testchains/hello_luigiworld_chain/TestS3Task/d41d8cd98f00b204e9800998ecf8427e/out.txt"


@pytest.mark.parametrize(
    "command",
    [
        ["chains"],
        ["status", KEY],
        ["cancel", "no-such-run"],
        ["schedules"],
        ["backfill", "no.such.schedule", "--start", "2026-01-01", "--end", "2026-01-02"],
        ["triggers"],
    ],
    ids=lambda command: command[0],
)
def test_a_command_of_the_registry_and_chains_loads_neither_requests_nor_jsonschema_nor_tornado(
    settings: Settings, command: list[str]
) -> None:
    """What it answers (a table, a status, a refusal naming what is not there) is asked of the registry, the store and
    the chains; no chain of the repository's imports those modules or checks a parameter by a schema."""
    probe = PROBE.format(names=(*WORKER_UNUSED, *WORKER_ABSENT))
    env = base_env() | settings_env(settings)
    ran = subprocess.run(
        [sys.executable, "-c", probe, *command], env=env, cwd=settings.data_dir.parent, capture_output=True, text=True
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "[]", ran.stdout + ran.stderr
