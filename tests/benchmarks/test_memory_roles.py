"""The memory benchmark names each process of an idle ``nectar serve`` by its role, from the command lines the
supervisor starts its parts with and which part forked it."""

from __future__ import annotations

import sys

import pytest

from benchmarks.memory import role
from nectar.supervisor import GUARDED_LUIGID, GUNICORN, LUIGID

#: the workers' process as ``nectar serve`` starts it (``Supervisor.start``)
WORKERS = [sys.executable, "-m", "nectar.cli", "worker", "--clock", "--workers", "2"]


@pytest.mark.parametrize(
    ("argv", "parent", "named"),
    [
        (GUNICORN, "supervisor", "arbiter"),
        (GUNICORN, "arbiter", "API worker"),
        (GUARDED_LUIGID, "supervisor", "luigid"),
        (LUIGID, "supervisor", "luigid"),
        (WORKERS, "supervisor", "worker"),
        (WORKERS, "worker", "attempt"),
        (WORKERS, "attempt", "attempt"),
        ([sys.executable, "-c", "pass"], "worker", "child of worker"),
    ],
)
def test_each_process_is_named_by_its_role(argv: list[str], parent: str, named: str) -> None:
    assert role(" ".join(argv), parent) == named
