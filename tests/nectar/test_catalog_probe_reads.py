"""A catalog in probe mode (:meth:`ChainCatalog.refresh_ahead`: the clock's, and the API's since gunicorn's master
turns it so): a helper module of the chains folder saved so that it hangs is probed before the chain that imports it
is executed here again, and the API's reads (``reads_wait``) wait for a changed file's probe up to the budget."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from nectar.catalog import NOT_YET, ChainCatalog
from nectar.catalog.loader import PROBING
from tests.conftest import wait_until

#: a chain whose task says what its helper module (a module of its chains folder) holds
USER_CHAIN = """
import luigi

from chains.helped import helpers


class HelpedTask(luigi.Task):
    value = helpers.VALUE
"""
#: the helper saved again: it notes the process executing it, then waits for a gate file (a share that does not
#: answer)
HUNG_HELPER = """
import os
import time

with open({marker!r}, "a") as out:
    out.write(f"{{os.getpid()}}\\n")
while not os.path.exists({gate!r}):
    time.sleep(0.05)

VALUE = 2
"""
QUICK_CHAIN = """
import luigi


class QuickTask(luigi.Task):
    pass
"""


def value(catalog: ChainCatalog) -> object:
    """The ``value`` of the helped chain's task as the catalog holds it: what its helper said as it was executed."""
    return getattr(catalog._chains[("helped", "user_chain")].tasks["HelpedTask"].cls, "value", None)


def _save(path: Path, source: str) -> None:
    """Write ``source`` with an mtime past the file's last (a change is always seen)."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(source)
    stamp = max(time.time_ns(), old + 1_000_000)
    os.utime(path, ns=(stamp, stamp))


@pytest.mark.parametrize("reads_wait", [False, True], ids=["clock", "api"])
def test_a_helper_saved_so_that_it_hangs_is_probed_before_its_chain_is_executed_here(
    tmp_path: Path, reads_wait: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain keeps its last execution here while the helper's new version is probed (its read returns, the
    gate closed); once the helper's import ends there, a read executes the chain here again, with the new helper.
    Before, the probe's verdict was kept by the chain file's stamp alone: the helper's change (``changed_imports``)
    executed the chain again here, in the reading thread, without a probe (the marker named this process; the read
    returned only once the gate opened)."""
    root = tmp_path / "chains"
    (root / "helped").mkdir(parents=True)
    # this process's package ``chains`` is the repository's (its folder is on sys.path): the test's folder searched
    # first, as a service's chains folder is its package ``chains``
    import chains

    monkeypatch.setattr(chains, "__path__", [str(root), *chains.__path__])
    helper = root / "helped" / "helpers.py"
    _save(helper, "VALUE = 1\n")
    _save(root / "helped" / "user_chain.py", USER_CHAIN)
    catalog = ChainCatalog(root)
    assert catalog.refresh_ahead(2.0, reads_wait=reads_wait) == []
    ref = ("helped", "user_chain")
    assert catalog._chains[ref].error is None, catalog._chains[ref].error
    assert value(catalog) == 1

    marker, gate = tmp_path / "executed-by", tmp_path / "gate"
    _save(helper, HUNG_HELPER.format(marker=str(marker), gate=str(gate)))
    read, done = threading.Event(), threading.Event()

    def loop() -> None:  # a clock's loop, a request thread: the thread that forks a probe lives on (PDEATHSIG)
        catalog.refresh()
        read.set()
        done.wait()

    def executors() -> list[str]:
        return marker.read_text().split() if marker.exists() else []

    threading.Thread(target=loop, daemon=True).start()
    try:
        wait_until(lambda: read.is_set() or str(os.getpid()) in executors())
        assert str(os.getpid()) not in executors(), "the chain was executed here, its new helper unprobed"
        assert read.is_set()
        # its last execution stands while the probe runs
        assert catalog._chains[ref].error is None and value(catalog) == 1
        wait_until(lambda: executors() != [])  # the probe executes it
        gate.touch()  # the helper's import ends
        wait_until(lambda: catalog.refresh() and value(catalog) == 2)
    finally:
        gate.touch()
        done.set()
        for name in [name for name in sys.modules if name.startswith("chains.helped")]:
            del sys.modules[name]
    executed = executors()
    assert executed[-1] == str(os.getpid()) and len(executed) == 2, executed  # the probe, then here


def test_an_api_read_waits_for_a_saved_files_probe_up_to_the_budget(tmp_path: Path) -> None:
    """The API's reads (``reads_wait``): a chain file saved while serving that imports within the budget is listed
    with its tasks by the very read that found it (executed first in a probe, then here); a file whose import hangs
    is listed, after the budget at most, as not executed here yet, and that read holds no lock another read needs.
    In the clock's mode (main's only one: ``refresh_ahead`` took no ``reads_wait``) the first read listed the quick
    file as being probed."""
    root = tmp_path / "chains"
    (root / "saved").mkdir(parents=True)
    catalog = ChainCatalog(root)
    catalog.refresh_ahead(2.0, reads_wait=True)
    _save(root / "saved" / "quick_chain.py", QUICK_CHAIN)
    listed = {chain.ref: (chain.error, sorted(chain.tasks)) for chain in catalog.chains()}
    assert listed == {"saved/quick_chain": (None, ["QuickTask"])}

    marker, gate = tmp_path / "executed-by", tmp_path / "gate"
    _save(root / "saved" / "hung_chain.py", HUNG_HELPER.format(marker=str(marker), gate=str(gate)))
    said: list[dict[str, str | None]] = []
    done = threading.Event()

    def request() -> None:  # a request thread (it lives on: the probe dies with the thread that forked it)
        said.append({chain.ref: chain.error for chain in catalog.chains()})
        done.wait()

    threading.Thread(target=request, daemon=True).start()
    try:
        wait_until(lambda: marker.exists())  # the probe executes it
        assert catalog.task("saved", "quick_chain", "QuickTask").name == "QuickTask"  # another read meanwhile
        wait_until(lambda: said != [])
        assert said == [{"saved/hung_chain": f"{NOT_YET}: {PROBING}", "saved/quick_chain": None}]
        assert marker.read_text().split() != [str(os.getpid())]
    finally:
        gate.touch()
        done.set()
