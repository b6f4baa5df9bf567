"""review23, a guard that passes on main, for wt69-plainleft (9063683: a chain file's execution takes the
working-folder lock, ``luigi_state._CWD_LOCK``, only where its own code names ``chdir``): a chain whose folder is moved
by a library's function (``import review23_homing; review23_homing.go_home()``, a module of the project's own outside
``chains/``: the chain's code names no ``chdir``) is executed
with no lock, so its move lands while another thread's ask holds the lock with the process in *its* chain's folder:
that ask's ``complete()``, reading a relative path, reads it in the other chain's folder. On main the execution waits
for the lock (the ask answers from its own folder, then the other chain executes)."""

from __future__ import annotations

import inspect
import os
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.catalog import luigi_state
from nectar.config import Settings
from tests.conftest import wait_until

#: moves to its folder at its top; its complete() waits for a gate, then is true where its folder holds done.flag
ASKED = """
import os
import time
from pathlib import Path

import luigi

os.chdir({folder!r})


class AskedTask(luigi.Task):
    def complete(self):
        Path({asked!r}).touch()
        while not Path({gate!r}).exists():
            time.sleep(0.02)
        return Path("done.flag").exists()  # relative: in the folder this chain moved to

    def run(self):
        pass
"""

#: a library of the project's outside ``chains/`` (a helper of the chain's own folder is executed under the lock as it
#: is imported: its code names chdir): the move is in its function
PATHS = """
import os
from pathlib import Path


def go_home():
    os.chdir({home!r})
    Path({moved!r}).touch()
"""

HOMING = """
import sys

import luigi

sys.path.insert(0, {libs!r})
import review23_homing  # noqa: E402

review23_homing.go_home()


class HomeTask(luigi.Task):
    def complete(self):
        return True
"""


def _waits_for_the_lock(thread: threading.Thread) -> bool:
    """Whether ``thread`` sleeps in ``executed_anew``, at its ``with _CWD_LOCK`` (main: the whole execution locked), or
    in the move its helper makes, waiting for the lock there (``luigi_state._moved_under_lock``: the lead's mend)."""
    frame = sys._current_frames().get(thread.ident or 0)
    executes = inspect.unwrap(luigi_state.executed_anew).__code__  # a context manager's: its generator's code
    moves = os.chdir.__code__ if isinstance(os.chdir, types.FunctionType) else None
    if frame is None or frame.f_code not in (executes, moves):
        return False
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "S"


def test_a_chain_moved_by_its_helper_during_another_chains_ask_moves_no_folder_under_that_ask(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
) -> None:
    """The asked task's submission waits in its ``complete()`` (in its folder, under the lock); the homing chain is
    executed at its first submission meanwhile; the gate opened, the asked task is found complete in its own folder
    (200, nothing queued). On 9063683 the homing chain's helper moved the process while the ask was in its
    ``complete()``: ``done.flag`` looked for in the homing folder, the task queued (202)."""
    folder, home = tmp_path / "asked-folder", tmp_path / "home-folder"
    folder.mkdir()
    home.mkdir()
    (folder / "done.flag").touch()
    asked, gate, moved = tmp_path / "asked", tmp_path / "gate", tmp_path / "moved"
    write_chain("moved/asked_chain", ASKED.format(folder=str(folder), asked=str(asked), gate=str(gate)))
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "review23_homing.py").write_text(PATHS.format(home=str(home), moved=str(moved)))
    write_chain("homing/home_chain", HOMING.format(libs=str(libs)))
    client = client_for(settings)
    answers: dict[str, int] = {}

    def submit(ref: str) -> None:
        answers[ref] = client.post(f"/api/chains/{ref}", json={}).status_code

    slow = threading.Thread(target=submit, args=("moved/asked_chain/AskedTask",))
    slow.start()
    homing = threading.Thread(target=submit, args=("homing/home_chain/HomeTask",))
    try:
        wait_until(asked.exists)  # the asked task is in its complete(), in its folder, holding the lock
        homing.start()
        wait_until(lambda: moved.exists() or _waits_for_the_lock(homing))
    finally:
        gate.touch()
        slow.join()
        if homing.ident is not None:
            homing.join()
    assert answers["moved/asked_chain/AskedTask"] == 200, answers
