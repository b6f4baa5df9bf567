"""A worker's chains executed ahead of its forks (:meth:`ChainCatalog.refresh_ahead`): each first in a probe child."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import nectar.catalog
from nectar.catalog import UNENDED, ChainCatalog
from nectar.catalog.loader import ENDED, PROBING
from tests.conftest import wait_until

CHAIN = """
import luigi


class QuickTask(luigi.Task):
    def run(self):
        pass
"""
#: a chain whose import ends its process (a probe counts it as not ended: left to its runs)
EXITING = """
import os

os._exit(3)
"""
#: a chain that calls sys.exit at its top: an import error as any other (SystemExit is caught, the process goes on)
SYS_EXIT = """
import sys

sys.exit(3)
"""


def _chains(root: Path) -> None:
    (root / "ahead").mkdir(parents=True)
    (root / "ahead" / "quick_chain.py").write_text(CHAIN)
    (root / "ahead" / "exiting_chain.py").write_text(EXITING)
    (root / "ahead" / "sysexit_chain.py").write_text(SYS_EXIT)


def test_a_chain_that_ends_its_process_is_left_to_its_runs_the_others_executed_here(tmp_path: Path) -> None:
    """The quick chain is executed here (its task listed), the one ending its process left (named), this process
    alive; the one calling ``sys.exit`` executed here too, listed as failing to import with its line."""
    _chains(tmp_path / "chains")
    catalog = ChainCatalog(tmp_path / "chains")
    left = catalog.refresh_ahead(2.0)
    assert left == [tmp_path / "chains" / "ahead" / "exiting_chain.py"]
    listed = {chain.ref: (sorted(chain.tasks), chain.error) for chain in catalog._chains.values()}
    assert listed == {
        "ahead/exiting_chain": ([], f"not executed here: {ENDED}"),
        "ahead/quick_chain": (["QuickTask"], None),
        "ahead/sysexit_chain": ([], "SystemExit: 3 (sysexit_chain.py, line 4)"),
    }


def test_without_a_probe_child_the_chains_are_executed_here_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork refused (memory, a process limit: not a fault this test can cause as root) executes every chain here,
    unbounded, as before the probe, rather than stopping the worker's start."""
    (tmp_path / "chains" / "ahead").mkdir(parents=True)
    (tmp_path / "chains" / "ahead" / "quick_chain.py").write_text(CHAIN)

    def refused(*_: object) -> set[tuple[str, str]]:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(nectar.catalog, "finished_within", refused)
    catalog = ChainCatalog(tmp_path / "chains")
    assert catalog.refresh_ahead(2.0) == []
    assert catalog.known_task("ahead", "quick_chain", "QuickTask") is not None


#: a chain whose import notes the process executing it, then waits for a gate file (a share that does not answer)
GATED = """
import os
import time

with open({marker!r}, "a") as out:
    out.write(f"{{os.getpid()}}\\n")
while not os.path.exists({gate!r}):
    time.sleep(0.05)


class GatedTask:
    pass
"""


def test_a_file_added_later_is_executed_here_only_once_its_probe_ended_however_slowly(tmp_path: Path) -> None:
    """After the worker's start (:meth:`ChainCatalog.refresh_ahead`), a read of the chains (the clock's loops') never
    waits for a new file: one whose import is held is told as being probed, and still so once its probe has run past
    the budget (a later read's probe is patient: a slow import, a heavy library on a loaded machine, is not left for
    good), not executed here; once its import ends there, the next read executes it here. Before the probe, the read
    executed the new file here, in the reading thread (it did not return until the gate opened); with the probe ended
    at the budget (wt65-clock as merged), the file was left as "took longer than 2s" until it changed."""
    root = tmp_path / "chains"
    _chains(root)
    catalog = ChainCatalog(root)
    catalog.refresh_ahead(2.0)
    marker, gate = tmp_path / "executed-by", tmp_path / "gate"
    hung = root / "ahead" / "gated_chain.py"
    hung.write_text(GATED.format(marker=str(marker), gate=str(gate)))
    ref = ("ahead", "gated_chain")

    def said() -> str | None:
        catalog.refresh()
        return catalog._chains[ref].error

    read, done = threading.Event(), threading.Event()

    def loop() -> None:  # a clock's loop: the thread that forks a probe lives on (the probe dies with it: PDEATHSIG)
        catalog.refresh()
        read.set()
        done.wait()

    threading.Thread(target=loop, daemon=True).start()
    try:
        wait_until(read.is_set)
        assert said() == f"not executed here yet: {PROBING}"
        wait_until(lambda: (held := catalog._probes.get(ref)) is not None and held[1] is not None)
        probe = catalog._probes[ref][1]
        assert probe is not None
        wait_until(lambda: marker.exists() and not probe.patience())  # the probe's file has run past the budget
        assert said() == f"not executed here yet: {UNENDED.format(budget=2.0)}"
        assert not probe.over
        gate.touch()  # the import ends
        wait_until(lambda: said() is None)
    finally:
        gate.touch()
        done.set()
    assert sorted(catalog._chains[ref].tasks) == []  # executed here: no luigi task in it
    executed = marker.read_text().split()
    assert executed[-1] == str(os.getpid()) and len(executed) == 2, executed  # the probe, then here


def test_a_listing_names_a_chain_that_calls_sys_exit_as_it_is_imported(tmp_path: Path) -> None:
    """The API's and the CLI's listing (no probe): the chain is listed as failing to import, with its line, and the
    listing goes on. Before, ``SystemExit`` left the listing (``GET /api/chains`` raised it)."""
    (tmp_path / "chains" / "ahead").mkdir(parents=True)
    (tmp_path / "chains" / "ahead" / "quick_chain.py").write_text(CHAIN)
    (tmp_path / "chains" / "ahead" / "sysexit_chain.py").write_text(SYS_EXIT)
    listed = {chain.ref: chain.error for chain in ChainCatalog(tmp_path / "chains").chains()}
    assert listed == {"ahead/quick_chain": None, "ahead/sysexit_chain": "SystemExit: 3 (sysexit_chain.py, line 4)"}
