"""A task's outputs asked outside its runs while another thread's ask holds the process's working directory moved (a
chain that moved to its folder at its top, its own ``complete()`` slow): luigi's ``complete()`` and the outputs'
listing of a chain that did not move are answered meanwhile, with no lock, a relative ``LocalTarget`` taken in the
process's own folder, not in the one the other ask moved to (``nectar.catalog.asked``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import luigi
import pytest

from nectar import outputs
from nectar.catalog import luigi_state
from nectar.config import Settings
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

MOVED = "chains.cwdlock.moved_chain"
OTHER = "chains.cwdlock.other_chain"


class RelativeTask(luigi.Task):
    """A plain task of a chain that did not move, its output named relatively."""

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("rel.txt")


@pytest.fixture
def held_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, threading.Event]]:
    """The process in its own folder ``home`` (``rel.txt`` there), the chain ``MOVED`` noted as moved to
    ``moved`` (no ``rel.txt`` there), and a thread holding an ask in ``moved`` until the event is set; ``home``."""
    home, moved = tmp_path / "home", tmp_path / "moved"
    home.mkdir()
    moved.mkdir()
    (home / "rel.txt").write_text("home\n")
    monkeypatch.chdir(home)
    monkeypatch.setitem(luigi_state._CWD_SET, MOVED, str(moved))  # as the chain's execution noted it
    monkeypatch.setattr(luigi_state, "_CWD_ORIGINAL", [str(home)])
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with luigi_state.asked_in_run_folder(MOVED):
            inside.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        wait_until(inside.is_set)
        assert os.getcwd() == os.path.realpath(moved)
        yield home, release
    finally:
        release.set()
        holder.join()
    assert os.getcwd() == str(home)


def asked_in_thread(ask: Callable[[], Any]) -> dict[str, Any]:
    """``ask()`` in a thread of its own; its answer under ``"said"`` once it is made."""
    answer: dict[str, Any] = {}
    threading.Thread(target=lambda: answer.setdefault("said", ask()), daemon=True).start()
    return answer


def test_an_unmoved_chain_is_answered_in_its_own_folder_while_another_ask_holds_the_folder_moved(
    held_moved: tuple[Path, threading.Event], settings: Settings
) -> None:
    """luigi's ``complete()`` of a task with a relative output, and the listing of that output, for a chain that did
    not move: answered while the other thread holds the folder moved, the file the process's own folder's. Failed
    before (both asked under the lock the other thread held): timed out waiting for the answers."""
    home, _ = held_moved
    service = closed_at_end(Nectar(settings))
    complete = asked_in_thread(lambda: service._complete(RelativeTask(), OTHER))
    listed = asked_in_thread(lambda: outputs._targets(RelativeTask, OTHER, "cwdlock/relative", ()))
    wait_until(lambda: "said" in complete and "said" in listed)
    assert complete["said"] is True
    assert listed["said"] == (("local", str(home / "rel.txt")),)
