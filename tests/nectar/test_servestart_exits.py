"""luigid ends without Python's teardown (:mod:`nectar.exits`): its exit handlers run (its state saved), then the
process ends with its status, the objects its modules hold never freed (~0.07 s of CPU a stop, a quarter of its
start's, at each of the suite's ~150 luigid stops); and what its imports made is frozen before it serves, made with
no collection (``nectar.supervisor._LUIGID``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Processes
from harness.processes import REPO, base_env

#: a ``sitecustomize`` that records, by pid, its process's exit handlers having run (``atexit``: registered first,
#: it runs last; ``frozen`` where its objects were frozen, ``gc.freeze``) and its teardown (a module's object freed:
#: only the teardown frees it)
RECORD_ENDS = """
import atexit, os

_RECORD = os.open(os.environ["ENDS_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)

class _Held:
    def __del__(self, write=os.write, fd=_RECORD, pid=os.getpid):
        write(fd, b"%d teardown\\n" % pid())

HELD = _Held()


def _exiting():
    import gc

    frozen = b" frozen" if gc.get_freeze_count() else b""
    os.write(_RECORD, b"%d atexit%s\\n" % (os.getpid(), frozen))

atexit.register(_exiting)
"""


@pytest.fixture
def hooked(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment that loads :data:`RECORD_ENDS` in a process, and the record it writes."""
    hooks, record = tmp_path / "hooks", tmp_path / "ends"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(RECORD_ENDS)
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "ENDS_RECORD": str(record)}, record


def ends(record: Path, pid: int) -> list[str]:
    return [line.split(" ", 1)[1] for line in record.read_text().splitlines() if int(line.split(" ", 1)[0]) == pid]


def test_luigid_freezes_its_imports_saves_its_state_and_ends_without_teardown(
    tmp_path: Path, hooked: tuple[dict[str, str], Path], processes: Processes
) -> None:
    env, record = hooked
    served = processes.luigid(None, tmp_path / "luigid", env=env)
    processes.stop(served.proc)
    assert served.proc.returncode == 0
    assert (tmp_path / "luigid" / "state.pickle").exists()  # its exit handler's save
    # its imports made with no collection, then frozen: was ["atexit", "teardown"] (nothing frozen, a teardown)
    assert ends(record, served.proc.pid) == ["atexit frozen"]


#: ``without_teardown`` around a main that starts a thread not daemonic and ends as ``sys.argv[1]`` says
ENDING = """
import atexit, sys, threading
from nectar.exits import without_teardown

def main():
    go = threading.Event()
    def late():
        go.wait()
        print("thread")  # buffered: flushed by the end
    threading.Thread(target=late).start()
    atexit.register(print, "atexit")
    go.set()
    if sys.argv[1] != "return":
        raise SystemExit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])

without_teardown(main)
"""


@pytest.mark.parametrize(("ending", "status", "said"), [("3", 3, ""), ("return", 0, ""), ("refused", 1, "refused\n")])
def test_an_end_without_teardown_is_pythons_end(
    hooked: tuple[dict[str, str], Path], ending: str, status: int, said: str
) -> None:
    """Its thread waited for, its exit handlers run, its output flushed, its status Python's (a message: Python's own
    end, which prints it, the teardown made)."""
    env, record = hooked
    proc = subprocess.Popen(
        [sys.executable, "-c", ENDING, ending],
        env={**base_env(), **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    assert (proc.returncode, out, err) == (status, "thread\natexit\n", said)
    assert ends(record, proc.pid) == (["atexit", "teardown"] if said else ["atexit"])
