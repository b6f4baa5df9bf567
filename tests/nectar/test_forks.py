"""The modules whose at-fork hook takes a lock before a fork register it before the fork gates do
(:data:`nectar.forks.LOCKING_BEFORE_FORK`), whatever the service imports first: hooks run in reverse order of
registration, and one registered after the gates ran before them, holding its lock while the fork waited at a gate for
a thread inside that waited for that lock."""

from __future__ import annotations

import json
import subprocess
import sys

from nectar.forks import LOCKING_BEFORE_FORK
from tests.conftest import REPO

#: what the service's processes import: the API (gunicorn's ``app:create_app()``), ``nectar`` and its roles, the
#: registries, the stores and what they import on first use, luigi's scheduler
SERVICE_IMPORTS = (
    "app",
    "gunicorn.app.wsgiapp",
    "gunicorn.arbiter",
    "nectar.cli",
    "nectar.cli.local",
    "nectar.cli.remote",
    "nectar.supervisor",
    "nectar.executor",
    "nectar.spares",
    "nectar.parallel",
    "nectar.waiting",
    "nectar.registry.sqlite",
    "nectar.registry.postgres",
    "nectar.stores.s3",
    "luigi.contrib.s3",
    "boto3",
    "luigi.server",
)

#: a fresh interpreter: ``os.register_at_fork`` noted (the registering module, the hooks it gives), then ``first``,
#: then the service's imports; prints what was registered, in order
PROBE = """
import importlib, json, os, sys

registered = []
register = os.register_at_fork


def noted(**hooks):
    registered.append([sys._getframe(1).f_globals.get("__name__"), sorted(hooks)])
    register(**hooks)


os.register_at_fork = noted
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(registered))
"""


def registrations(*imports: str) -> list[tuple[str, list[str]]]:
    """The at-fork hooks registered, in order, by a fresh interpreter importing ``imports``: (module, hook kinds)."""
    probe = [sys.executable, "-c", PROBE, *imports]
    answer = subprocess.run(probe, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return [(module, hooks) for module, hooks in json.loads(answer.stdout.splitlines()[-1])]


def test_every_hook_taking_a_lock_before_a_fork_is_registered_before_the_gates_even_with_nectar_forks_first() -> None:
    registered = registrations("nectar.forks", *SERVICE_IMPORTS)
    gates = registered.index(("nectar.forks", ["after_in_child", "after_in_parent", "before"]))
    before = {module for module, hooks in registered if "before" in hooks and not module.startswith("nectar")}
    assert before == set(LOCKING_BEFORE_FORK), f"modules with a before-fork hook: {sorted(before)}"
    late = [module for module, hooks in registered[gates:] if module in before]
    assert late == [], f"registered after the fork gates (their hooks would run first): {late}"
