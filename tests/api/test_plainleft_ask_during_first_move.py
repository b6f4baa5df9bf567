"""An ask of a chain that did not move its folder, made while another chain file's first execution has moved the
process's working directory (``os.chdir`` at its top, the top still running): before any move is noted the ask took
no lock and read that folder for a relative output (the status listed the other chain's folder, and cached it). It
waits for that execution's end, then names the output in the process's own folder, as the run's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.conftest import wait_until
from tests.helpers.threads import at_line

MOVING = '''
"""Moves to its data folder at its top, then waits there for a gate."""

import os
import time
from pathlib import Path

import luigi

os.chdir({folder!r})
Path({moved!r}).touch()
while not Path({gate!r}).exists():
    time.sleep(0.02)


class MovedTask(luigi.Task):
    def run(self):
        pass
'''

RELATIVE = '''
"""A plain task whose output is named relatively: the run's folder's, the process's own."""

import luigi


class RelativeTask(luigi.Task):
    def output(self):
        return luigi.LocalTarget("plainleft_relative.txt")
'''


def test_an_ask_during_a_chain_file_first_move_waits_for_it_and_names_the_process_own_folder(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
) -> None:
    """The moving chain's first execution (at its submission) stops in its moved folder; a status lookup of the
    relative task, made then, is answered once the gate opens, naming no path in that folder."""
    folder, moved, gate = tmp_path / "moved-folder", tmp_path / "moved", tmp_path / "gate"
    folder.mkdir()
    (folder / "plainleft_relative.txt").write_text("not the run's\n")
    write_chain("moving/first_chain", MOVING.format(folder=str(folder), moved=str(moved), gate=str(gate)))
    write_chain("plain/relative_chain", RELATIVE)
    client = client_for(settings)
    queued = client.post("/api/chains/plain/relative_chain/RelativeTask", json={})
    assert queued.status_code == 202, queued.get_json()
    status_url = queued.get_json()["data"]["status_url"]
    answers: dict[str, Any] = {}

    def submit() -> None:
        answers["moving"] = client.post("/api/chains/moving/first_chain/MovedTask", json={}).status_code

    def status() -> None:
        answers["status"] = client.get(status_url).get_data(as_text=True)

    moving = threading.Thread(target=submit)
    moving.start()
    try:
        wait_until(moved.exists)  # its top runs in the moved folder
        asking = threading.Thread(target=status)
        asking.start()
        wait_until(lambda: "status" in answers or at_line(asking)[0] == "run_folder")
    finally:
        gate.touch()
        moving.join()
    asking.join()
    assert answers["moving"] == 202, answers
    assert str(folder) not in answers["status"], answers["status"]
