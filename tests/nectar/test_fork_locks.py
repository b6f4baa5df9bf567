"""Every module-level lock of the service's modules is free in a process forked while a thread of its parent held
it: held there for ever (the holding thread does not exist in the child), its first use would hang the child, a
stray copy of its parent that only a SIGKILL ends (nectar.forks.lock_made_anew_in_children)."""

from __future__ import annotations

import importlib
import sys
import threading
import types
from contextlib import ExitStack

from tests.helpers.forks import said_by_a_child_forked_while_held

#: modules with a lock of their own, imported here so that the scan below sees them whatever ran before
WITH_LOCKS = (
    "nectar.upstream",
    "nectar.deferred_imports",
    "nectar.registry.sqlite",
    "nectar.registry.postgres",
    "nectar.luigi_internals",
    "nectar.catalog.luigi_state",
)
LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def module_locks() -> list[tuple[types.ModuleType, str]]:
    """(module, name) of each lock bound at module level in the ``nectar`` modules this process has imported."""
    for name in WITH_LOCKS:
        importlib.import_module(name)
    found = []
    for module_name, module in sorted(sys.modules.items()):
        if module_name == "nectar" or module_name.startswith("nectar."):
            found += [(module, name) for name, value in vars(module).items() if isinstance(value, LOCK_TYPES)]
    return found


def test_the_scan_finds_the_module_locks_the_service_has() -> None:
    found = {f"{module.__name__}.{name}" for module, name in module_locks()}
    assert {"nectar.upstream._PARSING", "nectar.deferred_imports._LOCK", "nectar.registry.sqlite._OPENING"} <= found


def test_no_module_lock_held_by_a_parents_thread_at_the_fork_is_held_in_the_child() -> None:
    locks = module_locks()
    every_lock = ExitStack()
    for module, name in locks:
        every_lock.enter_context(getattr(module, name))

    def held_in_the_child() -> bytes:  # each lock read by name, as its users read it
        return ",".join(f"{m.__name__}.{n}" for m, n in locks if not getattr(m, n).acquire(blocking=False)).encode()

    said = said_by_a_child_forked_while_held(every_lock, lambda: b"held:" + held_in_the_child())

    assert said == b"held:", f"locks held for ever in the child: {said!r}"
