"""review21, a guard that passes on main, for wt67-compat (a task's ``output()`` and ``complete()`` asked in the folder
its chain file moved to, under one process-wide lock, ``luigi_state._CWD_LOCK``, held for the whole ask and for each
whole chain execution): once any chain file of the process has moved its working folder (``os.chdir`` at its top),
every ask of every chain takes that lock, so one slow ``complete()`` (an S3 listing, a database) holds up every other
submission and status of the API's threads, of any chain. Here a chain that moved its folder has a ``complete()``
held by a gate; a submission of another chain's task, in another thread, must be answered meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.conftest import wait_until

MOVED = '''
"""Moves to its data folder at its top; its complete() waits for a gate."""

import os
import time
from pathlib import Path

import luigi

os.chdir({folder!r})


class SlowTask(luigi.Task):
    def complete(self):
        Path({asked!r}).touch()
        while not Path({gate!r}).exists():
            time.sleep(0.02)
        return False

    def run(self):
        pass
'''

OTHER = '''
"""An ordinary plain task."""

import luigi


class QuickTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget({out!r})

    def run(self):
        with self.output().open("w") as out:
            out.write("quick\\n")
'''


def test_a_slow_complete_of_a_chain_that_moved_its_folder_holds_up_no_other_submission(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
) -> None:
    """The slow task's submission waits in its ``complete()`` (its marker written, its gate shut); the other chain's
    submission is answered 202 before the gate opens. On wt67-compat it waited for the gate (the quick task's
    ``output()`` and ``exists()`` asked under the lock the slow ``complete()`` held)."""
    folder, asked, gate = tmp_path / "moved-folder", tmp_path / "asked", tmp_path / "gate"
    folder.mkdir()
    write_chain("moved/slow_chain", MOVED.format(folder=str(folder), asked=str(asked), gate=str(gate)))
    write_chain("plain/quick_chain", OTHER.format(out=str(tmp_path / "quick.txt")))
    client = client_for(settings)
    # the chains executed first, as a served API's workers have them (gunicorn's master executes every chain before
    # it forks one): a chain file executed while another thread's ask holds the folder moved waits for it (its top
    # runs in the process's own folder)
    assert client.get("/api/chains").status_code == 200
    answers: dict[str, Any] = {}

    def submit(ref: str) -> None:
        answers[ref] = client.post(f"/api/chains/{ref}", json={}).status_code

    slow = threading.Thread(target=submit, args=("moved/slow_chain/SlowTask",))
    slow.start()
    try:
        wait_until(asked.exists)  # the slow submission is in its complete()
        quick = threading.Thread(target=submit, args=("plain/quick_chain/QuickTask",))
        quick.start()
        wait_until(lambda: "plain/quick_chain/QuickTask" in answers)
        assert answers == {"plain/quick_chain/QuickTask": 202}, answers  # the slow one still held at its gate
    finally:
        gate.touch()
        slow.join()
    assert answers["moved/slow_chain/SlowTask"] == 202, answers
