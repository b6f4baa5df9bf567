"""The machine's own state beside a figure: its speed by a fixed calibration (a pure-Python loop, a fork and exit), the
CPU its hypervisor stole, and what a run's new files cost the kernel where the runs make theirs.

A figure's CPU a run moved by up to 2x between runs of the same code minutes apart (round 59): most of it the kernel's
work for the six inodes a run makes. On an ext4 without a journal (this machine's root) a new inode is not given one
freed in the last five minutes (ten, while its inode table block is dirty): for each, the allocator walks past every
such inode in the block group (``recently_deleted``), and once every free inode there is a recent one it walks the
whole group before it takes one anyway. A benchmark's folder removed at its end (28,000 inodes for
``--only throughput --quick``) frees the very groups the next run's folders are then made in (a folder's group is
chosen from its parent's, ``/tmp``'s for every run): each of that run's inodes cost ~0.1-0.6 ms of system time where
it costs ~15 µs otherwise. :func:`run_inodes_cpu` makes a run's files where the runs make theirs, so that the figure
says what its runs paid."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from benchmarks.harness import CHAIN, CHAIN_TYPE, median
from nectar.keys import SERVICE_FILES, TargetKey

#: iterations of the calibration's pure-Python loop (~10 ms of CPU on this machine, quiet), and its repeats
LOOP, LOOP_REPEATS = 300_000, 5
#: forks of the calibration, each child exiting at once
FORKS = 20
#: run-like sets of files :func:`run_inodes_cpu` makes at each call
PROBE_SETS = 8


class Calibration(NamedTuple):
    """The machine's speed now, by work that never changes: the median thread CPU ms of a fixed pure-Python loop
    (what the service's Python runs at: a busy sibling of the core, a cold cache or a slower host show here) and the
    median wall ms of a fork whose child exits at once, waited for (page tables copied, a process made and reaped)."""

    loop_ms: float
    fork_ms: float

    def said(self) -> str:
        return f"a fixed loop {self.loop_ms:.2f} ms of CPU, a fork and exit {self.fork_ms:.2f} ms"


def _loop() -> int:
    total = 0
    for i in range(LOOP):
        total += i * 2 % 7
    return total


def calibrate() -> Calibration:
    """:class:`Calibration`, measured now (~70 ms)."""
    loops = []
    for _ in range(LOOP_REPEATS):
        began = time.thread_time()
        _loop()
        loops.append(time.thread_time() - began)
    forks = []
    for _ in range(FORKS):
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        forks.append(time.perf_counter() - began)
    return Calibration(median(loops) * 1000, median(forks) * 1000)


def calibrations_said(found: list[Calibration]) -> str:
    """The calibrations of a benchmark (each batch's, then one at its end): the median and the range of each."""
    loops, forks = [c.loop_ms for c in found], [c.fork_ms for c in found]
    return (
        f"a fixed loop {median(loops):.2f} ms of CPU ({min(loops):.2f}-{max(loops):.2f}), a fork and exit "
        f"{median(forks):.2f} ms ({min(forks):.2f}-{max(forks):.2f}), n={len(found)}"
    )


def stolen() -> float:
    """CPU seconds the hypervisor has stolen from this machine's cores so far (``/proc/stat``'s steal)."""
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def run_inodes_cpu(targets: Path, first: int, clock: Callable[[], float] = time.thread_time) -> float:
    """The median CPU seconds (nearly all the kernel's) this thread took to make each inode of :data:`PROBE_SETS`
    sets of a run's files (its task's folder, ``log/`` and the files the service writes: :data:`SERVICE_FILES`), of
    ProbeTask ``n`` = ``first`` … ``first + PROBE_SETS - 1`` under ``targets``, beside the folders of the runs: where
    the file system makes a run's (a folder's block group is chosen from its parent's), not in a folder of the
    probe's own, which may lie in a group the runs never reach. ``first``: numbers no run is given. The files are
    kept: removed, they would make the runs' dearer. ``clock``: this thread's CPU seconds."""
    took = []

    def made(make: Callable[[Path], object], path: Path) -> None:
        began = clock()
        make(path)
        took.append(clock() - began)

    for n in range(first, first + PROBE_SETS):
        key = TargetKey.for_task(CHAIN_TYPE, CHAIN, "ProbeTask", {"n": str(n)})
        folder = targets / key.folder
        folder.parent.mkdir(parents=True, exist_ok=True)  # the task's folder: there once a run of it ended
        made(os.mkdir, folder)
        for name in sorted(SERVICE_FILES):
            path = targets / key.with_file(name).path
            if not path.parent.exists():
                made(os.mkdir, path.parent)
            made(_create, path)
    return median(took)


def _create(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
