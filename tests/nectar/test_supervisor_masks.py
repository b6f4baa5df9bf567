"""A stop held while a part of ``nectar serve`` starts (``lifeline.part_of_this_process``, ``supervisor.become``) is
let go in every process once it runs: a process left with SIGTERM or SIGHUP blocked ignores ``kill`` for ever, and
so does each process it starts (a mask is kept across ``fork`` and ``exec``)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import requests

from tests.conftest import wait_until
from tests.faults.conftest import cmdline, descendants
from tests.nectar.test_serve import _serve

#: a chain whose task starts a program, as a user's task may (``subprocess.run``), and writes down the signals that
#: program has blocked (what the task's process and thread handed down to it), beside the chain file
PROBE_CHAIN = """
import subprocess
from pathlib import Path

from nectar import NectarTask


class MaskTask(NectarTask):
    def run(self):
        said = subprocess.run(["grep", "^SigBlk", "/proc/self/status"], capture_output=True, text=True, check=True)
        Path(__file__).with_name("mask.txt").write_text(said.stdout)
        with self.output().open("w") as out:
            out.write("done\\n")
"""
#: the bits of a ``SigBlk`` line that would leave a process deaf to ``kill`` and to a closed terminal
STOPS = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGHUP - 1))


def blocked(status_line: str) -> int:
    """The stops blocked in a ``SigBlk:\\t<hex>`` line of ``/proc/<pid>/status``."""
    return int(status_line.split(":", 1)[1].strip(), 16) & STOPS


#: a thread's mask for the moment glibc starts a thread or a process from it (every signal it can block: all but
#: SIGKILL and SIGSTOP), set back as soon as the start is done: seen then, the thread is looked at again
STARTING = ((1 << 64) - 1) & ~((1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1)))


def mask_line(pid: int, tid: str) -> str | None:
    """The ``SigBlk:`` line of thread ``tid`` of ``pid``, or None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return next(line for line in lines if line.startswith("SigBlk:"))


def settled_mask_line(pid: int, tid: str) -> str | None:
    """:func:`mask_line` once it is not glibc's mask of a start under way (:data:`STARTING`); a thread left with
    every signal blocked for good fails the wait."""

    def settled() -> list[str | None]:  # [the line] once settled (truthy, None in it or not), else []
        line = mask_line(pid, tid)
        return [line] if line is None or int(line.split(":", 1)[1].strip(), 16) != STARTING else []

    return wait_until(settled, timeout=60, interval=0.001)[0]


def blocked_threads(pid: int) -> list[str]:
    """Each thread of ``pid`` that blocks a stop (gone threads and processes aside): it hands the mask to what it
    forks or spawns."""
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for tid in threads:
        mask = settled_mask_line(pid, tid)
        if mask is not None and blocked(mask):
            found.append(f"{pid}/{tid} ({cmdline(pid)}): {mask}")
    return found


def test_every_part_of_serve_and_a_tasks_program_take_stops(tmp_path: Path) -> None:
    """Once ``nectar serve`` is up and has run a task: no thread of any process it started (luigid, gunicorn's master
    and workers, the workers' process, its spares) blocks SIGTERM or SIGHUP, nor did the program the task ran."""
    chains = tmp_path / "chains"
    (chains / "masks").mkdir(parents=True)
    (chains / "masks" / "probe_chain.py").write_text(PROBE_CHAIN)
    with contextlib.contextmanager(_serve)(tmp_path, {"NECTAR_CHAINS_DIR": str(chains)}) as served:  # stopped after
        answer = requests.post(f"{served.api}/api/chains/masks/probe_chain/MaskTask", timeout=60)
        assert answer.status_code == 202, answer.text
        status_url = answer.json()["data"]["status_url"]

        def done() -> bool:
            status = requests.get(status_url, timeout=60).json()["data"]["job_status"]
            assert status in {"PENDING", "RUNNING", "DONE"}, status
            return bool(status == "DONE")

        wait_until(done, timeout=60, interval=0.2)
        said = (chains / "masks" / "mask.txt").read_text()
        assert said.startswith("SigBlk:") and not blocked(said), said
        started = descendants(served.proc.pid)
        assert len(started) >= 4, {pid: cmdline(pid) for pid in started}  # luigid, gunicorn's two, the workers
        assert [found for pid in started for found in blocked_threads(pid)] == []
