"""``NECTAR_PROCESS_MAX_RSS_MB``: an attempt process that added more than it after a run (a real task that allocates
and keeps what it allocated) takes no other run: it exits, saying why, its run DONE; its next run is another
process's. A process under the bound takes the next one (README, Chains: a worker's process takes another run)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import NECTAR, Processes, settings_env
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.faults.conftest import alive
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import CHAIN, StartWorker, output, submit, until_reused
from tests.nectar.test_spare import KEPT, ended, pid_of

#: the bound the worker is given, and what a run of HoldTask keeps past it (MB)
BOUND_MB, HELD_MB = 200, 300

HOLD_CHAIN = """
import builtins

import luigi
from nectar import NectarTask
from nectar.reuse import rss_mb


class HoldTask(NectarTask):
    n = luigi.IntParameter()
    mb = luigi.IntParameter()

    def run(self):
        # written, so resident; kept where the next run of the process would find it (the chain's module is new)
        builtins.__dict__.setdefault("held_by_runs", []).append(b"\\x01" * (self.mb * 2**20))
        with self.output().open("w") as out:
            out.write(f"{rss_mb():.0f}\\n")
"""


#: a chain whose module holds ``HELD_MB`` from its import on, once per process (its runs' processes, forked from the
#: worker that imported it, find it held): a ``nectar worker --clock`` imports every chain before its first fork
BIG_CHAIN = f"""
import builtins

if not hasattr(builtins, "held_at_import"):
    builtins.held_at_import = b"\\x01" * ({HELD_MB} * 2**20)  # written, so resident
"""


@pytest.fixture
def bounded(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    """A worker's settings with the bound, on the reuse chain (as test_reuse's) and the hold chain."""
    write_chain("reuse/reuse_chain", CHAIN.format(version="v1"))
    write_chain("reuse/hold_chain", HOLD_CHAIN)
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, process_max_rss_mb=BOUND_MB)


def test_a_process_holding_more_than_the_bound_after_its_run_exits_and_the_next_run_is_anothers(
    bounded: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    nectar = closed_at_end(Nectar(bounded))
    start_worker(bounded, workers=1)
    below = until_reused(nectar, 1)  # under the bound, a process takes run after run

    submission = nectar.submit("reuse", "hold_chain", "HoldTask", {"n": 1, "mb": HELD_MB})
    assert submission.run is not None
    held = ended(nectar, submission.run.id)

    assert held.state == RunState.DONE and int(output(nectar, held)) > BOUND_MB
    wait_until(lambda: not alive(pid_of(held)), timeout=60)
    said = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    assert f"attempt process {pid_of(held)} exits after " in said, said
    assert f"MB, above {BOUND_MB} MB" in said, said
    after = ended(nectar, submit(nectar, "CountTask", n=100))
    assert after.state == RunState.DONE and pid_of(after) != pid_of(held)
    assert all(run.state == RunState.DONE for run in below)


def test_a_process_forked_from_a_worker_past_the_bound_that_keeps_little_takes_the_next_run(
    bounded: Settings, processes: Processes, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """The bound is on what a process adds to what it shares with its worker: a worker itself past it (``--clock``
    imports the chains, one of which holds HELD_MB) forks processes whose resident size is past it before any run;
    on main each was retired after its first run ("its resident size is 3xx MB, above 200 MB"), none reused."""
    write_chain("reuse/big_chain", BIG_CHAIN)
    nectar = closed_at_end(Nectar(bounded))
    worker = processes.start(
        "worker", [*NECTAR, "worker", "--workers", "1", "--clock"], {**os.environ, **settings_env(bounded)}, tmp_path
    )

    runs = until_reused(nectar, 1)

    assert resident_mb(worker.pid) > HELD_MB > BOUND_MB  # the worker is past the bound, and so its processes
    assert all(run.state == RunState.DONE for run in runs)
    assert resident_mb(pid_of(runs[-1])) > BOUND_MB  # the reused process too, by the pages it shares


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


MAP_CHAIN = """
import builtins
import ctypes
import mmap
import os

import luigi
from nectar import NectarTask
from nectar.reuse import rss_mb

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]


class MapTask(NectarTask):
    path = luigi.Parameter()

    def run(self):
        # mapped as a C library maps a file (safetensors' weights, a Rust or C extension's): its descriptor closed once
        # mapped (Python's mmap.mmap keeps a copy of it open: a file left open, which retires the process anyway)
        size = os.path.getsize(self.path)
        fd = os.open(self.path, os.O_RDONLY)
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        os.close(fd)
        assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        pages = (ctypes.c_char * size).from_address(address)
        sum(pages[at][0] for at in range(0, size, mmap.PAGESIZE))  # every page read, so resident
        builtins.__dict__.setdefault("mapped_by_runs", []).append(pages)  # kept mapped, as a model's weights are
        with self.output().open("w") as out:
            out.write(f"{rss_mb():.0f}\\n")
"""


def test_a_process_that_keeps_a_file_mapped_past_the_bound_takes_the_next_run(
    bounded: Settings, start_worker: StartWorker, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """A file a run maps and keeps mapped is resident as its pages are read, but they are the page cache's, which the
    kernel takes back at will and which retiring the process would not give back: the bound counts anonymous pages
    alone. On main the process (resident past the bound by the file's pages) exited after the run."""
    write_chain("reuse/map_chain", MAP_CHAIN)
    mapped = tmp_path / "mapped.bin"
    with open(mapped, "wb") as file:
        for _ in range(HELD_MB):
            file.write(b"\x01" * 2**20)
    nectar = closed_at_end(Nectar(bounded))
    start_worker(bounded, workers=1)
    until_reused(nectar, 1)

    submission = nectar.submit("reuse", "map_chain", "MapTask", {"path": str(mapped)})
    assert submission.run is not None
    run = ended(nectar, submission.run.id)

    assert run.state == RunState.DONE and int(output(nectar, run)) > BOUND_MB
    said = lambda: "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))  # noqa: E731

    later = iter(range(1000, 2000))

    def taken_again() -> bool:
        assert alive(pid_of(run)), said()  # on main: "exits after its run: its resident size grew ... above 200 MB"
        return pid_of(ended(nectar, submit(nectar, "CountTask", n=next(later)))) == pid_of(run)

    wait_until(taken_again, timeout=120, interval=0)
    assert f"attempt process {pid_of(run)} exits after " not in said()
