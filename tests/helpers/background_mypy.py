"""mypy started once at the beginning of a session that will run tests/test_lint.py's mypy test, which waits for it.

A clean mypy run is ~45 s of one CPU on the CI machine (CI starts without a cache): run by the test itself, it was
45 s of one xdist worker's share of the session. Started by the controller as soon as a worker's collection shows
the test, it runs beside the tests that wait on processes (most of them), and the test reads its answer. The
folder where it writes is handed to the xdist workers in their ``workerinput``; a session without xdist (``-p
no:xdist``, ``-n 0``) starts it after its own collection. A session that does not run the test starts nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, lifeline_env, waitfor

#: the test that reads the answer
MYPY_TEST = "tests/test_lint.py::test_tool_is_clean[mypy]"
#: seconds the test waits for the answer, as long as the test gave a mypy of its own: fails a hung one only
PATIENCE = 300.0
#: the workers' key of the folder
WORKERINPUT_KEY = "nectar_mypy"

FOLDER = pytest.StashKey[Path]()
STARTED = pytest.StashKey["subprocess.Popen[bytes]"]()
NOTING = pytest.StashKey[threading.Thread]()


@dataclass
class Answer:
    returncode: int
    output: str


def started_in_background(config: pytest.Config) -> Answer | None:
    """The answer of the session's mypy, once it has exited; None if the session started none (the test then runs
    mypy itself)."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    folder = Path(workerinput[WORKERINPUT_KEY]) if workerinput and WORKERINPUT_KEY in workerinput else None
    folder = folder or config.stash.get(FOLDER, None)
    if folder is None or not (folder / "output").exists():
        return None
    returncode = folder / "returncode"
    waitfor(returncode.exists, PATIENCE, f"the mypy started at the session's start to exit ({folder})", interval=0.2)
    return Answer(int(returncode.read_text()), (folder / "output").read_text(errors="replace"))


def start(config: pytest.Config) -> None:
    """mypy in a process of its own, its output and then its exit code in the session's folder; once."""
    if STARTED in config.stash:
        return
    folder = config.stash[FOLDER]
    with open(folder / "output", "wb") as output:
        env = {**os.environ, **lifeline_env()}  # dies with the session, even SIGKILLed (harness/lifeline.py)
        argv = [sys.executable, "-m", "mypy"]
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    config.stash[STARTED] = proc

    def note_exit() -> None:
        code = proc.wait()
        (folder / "returncode.part").write_text(str(code))
        (folder / "returncode.part").rename(folder / "returncode")  # whole, or not there

    config.stash[NOTING] = threading.Thread(target=note_exit, name="mypy-exit", daemon=True)
    config.stash[NOTING].start()


def stop(config: pytest.Config) -> None:
    proc = config.stash.get(STARTED, None)
    if proc is not None and proc.poll() is None:
        proc.kill()
    if NOTING in config.stash:
        config.stash[NOTING].join()  # its exit code written before the folder goes
    shutil.rmtree(config.stash[FOLDER], ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller starts it
    config.stash[FOLDER] = Path(tempfile.mkdtemp(prefix="nectar-mypy-"))
    config.add_cleanup(lambda: stop(config))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[WORKERINPUT_KEY] = str(node.config.stash[FOLDER])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    if MYPY_TEST in ids:
        start(node.config)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput") and any(item.nodeid == MYPY_TEST for item in session.items):
        start(session.config)
