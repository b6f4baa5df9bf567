"""Two asks of tasks' ``output()`` in one process's threads (the API's gunicorn threads): one of a chain that moved to
its folder at its top, asked there (``luigi_state.asked_in_run_folder`` moves the process's working directory), one of
a chain that did not, asked in the process's own folder: the second waits until the first gave the folder back, and is
never asked in the first's folder (a relative ``LocalTarget`` of it would be listed there)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from nectar.catalog import luigi_state
from tests.conftest import wait_until

MOVED = "chains.compat67.moved_chain"


def waiting_in_an_ask(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside an ask's context (:func:`luigi_state._asked_in`), before its block."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code is luigi_state._asked_in.__wrapped__.__code__:  # type: ignore[attr-defined]
            return True
        frame = frame.f_back
    return False


def test_an_ask_where_no_chain_moved_waits_for_an_ask_in_a_moved_folder_and_runs_in_the_process_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread asks in the moved chain's folder and holds there; another asks for a chain that did not move: it waits
    (seen in its frames, not after a time), then runs in the process's own folder once the first gave it back.
    Failed with the unmoved ask made outside the lock (``asked_in_run_folder`` returning at once where the chain did
    not move): the second thread ran at once, in the moved folder."""
    moved = tmp_path / "moved"
    moved.mkdir()
    monkeypatch.setitem(luigi_state._CWD_SET, MOVED, str(moved))  # as the chain's execution noted it
    own = os.getcwd()
    inside, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def ask_moved() -> None:
        with luigi_state.asked_in_run_folder(MOVED):
            seen.append(os.getcwd())
            inside.set()
            release.wait()

    def ask_unmoved() -> None:
        with luigi_state.asked_in_run_folder("chains.compat67.other_chain"):
            seen.append(os.getcwd())

    first = threading.Thread(target=ask_moved)
    first.start()
    try:
        wait_until(inside.is_set)
        second = threading.Thread(target=ask_unmoved)
        second.start()
        wait_until(lambda: len(seen) == 2 or waiting_in_an_ask(second))
    finally:
        release.set()
        first.join()
    second.join()
    assert seen == [os.path.realpath(moved), own], seen
    assert os.getcwd() == own
