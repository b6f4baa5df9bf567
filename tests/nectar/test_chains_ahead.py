"""A worker's chains executed ahead of its forks (:meth:`ChainCatalog.refresh_ahead`): each first in a probe child."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import nectar.catalog
from nectar.catalog import ChainCatalog

CHAIN = """
import luigi


class QuickTask(luigi.Task):
    def run(self):
        pass
"""
#: a chain whose import ends its process (a probe counts it as not ended: left to its runs)
EXITING = """
import sys

sys.exit(3)
"""


def _chains(root: Path) -> None:
    (root / "ahead").mkdir(parents=True)
    (root / "ahead" / "quick_chain.py").write_text(CHAIN)
    (root / "ahead" / "exiting_chain.py").write_text(EXITING)


def test_a_chain_that_ends_its_process_is_left_to_its_runs_the_others_executed_here(tmp_path: Path) -> None:
    """The quick chain is executed here (its task listed), the exiting one left (named), this process alive."""
    _chains(tmp_path / "chains")
    catalog = ChainCatalog(tmp_path / "chains")
    left = catalog.refresh_ahead(2.0)
    assert left == [tmp_path / "chains" / "ahead" / "exiting_chain.py"]
    assert [(chain.ref, sorted(chain.tasks)) for chain in catalog._chains.values()] == [
        ("ahead/quick_chain", ["QuickTask"])
    ]


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
