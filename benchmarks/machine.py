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
says what its runs paid; :func:`spread_folder` is where ``python -m benchmarks`` makes its folder, so that it is not
made where the last one was removed."""

from __future__ import annotations

import array
import errno
import fcntl
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
#: ``FS_IOC_GETFLAGS``, ``FS_IOC_SETFLAGS`` and ``FS_TOPDIR_FL`` (``linux/fs.h``; ``chattr +T``): the flag that has
#: ext4 place a folder's new folders as it places those of the file system's root
GET_FLAGS, SET_FLAGS, TOPDIR = 0x80086601, 0x40086602, 0x00020000
#: what an ioctl of the flags raises on a file system that has none (tmpfs, overlayfs) or refuses one
NO_FLAGS = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM, errno.EACCES})


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


def spread_folder(folder: Path) -> Path:
    """``folder``, made if need be and flagged ``FS_TOPDIR_FL`` where its file system takes the flag (ext4), so that
    each folder made in it is placed as one at the file system's root (Orlov): in a block group with more free inodes
    and blocks than average and the fewest folders, searched from a start that varies, not from its parent's group
    onward. A benchmark's folder made beside the last one's, just removed, lies in the groups that removal freed (the
    runs' inodes then ~0.3-0.6 ms each, ~15 µs elsewhere: round 59); made here, in one group of many. On a file
    system without the flag nothing walks past inodes freed recently: the folder is used as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, GET_FLAGS, flags, True)
        if not flags[0] & TOPDIR:
            fcntl.ioctl(fd, SET_FLAGS, array.array("i", [flags[0] | TOPDIR]), True)
    except OSError as exc:
        if exc.errno not in NO_FLAGS:
            raise
    finally:
        os.close(fd)
    return folder
