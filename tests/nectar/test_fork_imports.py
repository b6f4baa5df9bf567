"""A process forked while another thread of its parent executes a chain file (and imports what it imports) can
import the same modules: the fork waits for the chain file's execution to end (nectar.forks.IMPORTS). The workers'
process runs the clock's threads, which reload changed chain files, while it forks attempts."""

from __future__ import annotations

import os
import signal
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import wait_until
from nectar.catalog.loader import load_chain_module
from nectar.forks import IMPORTS

#: seconds that only fail a hung test
PATIENCE = 60.0
EVENTS = "_nectar_fork_import_events"


@pytest.fixture
def slow_import(tmp_path: Path) -> Iterator[tuple[Path, str, types.SimpleNamespace]]:
    """A chain file importing a module whose import waits, once it has begun, until ``release`` is set."""
    module = f"slow_import_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(f"import {EVENTS} as events\nevents.entered.set()\nevents.release.wait()\n")
    chain = tmp_path / "demo" / "slow_chain.py"
    chain.parent.mkdir()
    chain.write_text(f"import {module}\n")
    events = types.SimpleNamespace(entered=threading.Event(), release=threading.Event())
    sys.modules[EVENTS] = events  # type: ignore[assignment]
    sys.path.insert(0, str(tmp_path))
    try:
        yield chain, module, events
    finally:
        events.release.set()
        sys.path.remove(str(tmp_path))
        for name in (EVENTS, module, "chains.demo.slow"):
            sys.modules.pop(name, None)


def test_a_fork_during_a_chain_files_import_waits_and_its_child_imports_the_same_module(
    slow_import: tuple[Path, str, types.SimpleNamespace],
) -> None:
    chain, module, events = slow_import
    loading = threading.Thread(target=load_chain_module, args=(chain, "demo", "slow"))
    loading.start()
    assert events.entered.wait(PATIENCE), "the chain file never began importing its module"

    children: list[int] = []

    def fork() -> None:
        pid = os.fork()
        if pid == 0:  # the child: import what the parent's other thread was importing, then leave
            try:
                __import__(module)
            finally:
                os._exit(0)
        children.append(pid)

    forking = threading.Thread(target=fork)
    forking.start()
    # the fork waits at the gate for the import to end (or, unguarded, has happened already, mid-import)
    wait_until(lambda: bool(children) or IMPORTS._gate._forking is not None, timeout=PATIENCE)
    events.release.set()
    forking.join()
    loading.join()

    (child,) = children
    try:
        wait_until(lambda: os.waitpid(child, os.WNOHANG)[0] == child, timeout=PATIENCE)
    except AssertionError:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        raise AssertionError(f"a child forked while {module} was being imported never finished importing it") from None
