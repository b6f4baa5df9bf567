"""How ``nectar serve`` waits for a part it asked to stop: until its deadline, then killed; but luigid never while it
saves its state, which a kill would lose.

luigid saves the state it holds as it stops (every task it keeps: :func:`nectar.luigi_internals.luigid_saves_whole`
writes it into a new file beside the state file, then renames it into place), and it saves only then: killed at
the stop timeout mid-save, it left the state file it started from, every task since lost. A save's length grows with
what luigid holds and with the machine's load (48,000 tasks under load took more than the 20 s of
``NECTAR_STOP_TIMEOUT``), so the timeout is not what bounds it: past its deadline, a luigid whose save is under way
(its new file there and growing, or just renamed into place) is given the stop timeout again from each sign of
progress, and killed only once its save makes none for that long (a luigid frozen, a disk that stopped answering),
or where no save is under way (a luigid that never began to save: as any other part). A save whose data is all
written (its file renamed :data:`FLUSHING`) is waited for however long the disk's flush of it takes: a kill then
would lose the state written, and could not end luigid sooner (a process waiting in the kernel for its disk, in
``fsync``, dies only once the wait ends), so it moves at every look.

Until its deadline, a part is awaited on its exit itself (its pidfd: :func:`exited`), not looked at again and again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger("nectar.supervisor")

#: seconds between two looks at a part past its deadline that has not stopped yet (its save's progress, the clock)
POLL = 0.1
#: the longest one sleep on a part's exit lasts (``poll(2)`` takes at most ~24 days): a longer wait sleeps again
LONGEST_SLEEP = 86400.0
#: how a file luigid is saving its state into ends (:func:`nectar.luigi_internals.luigid_saves_whole` names it so), its
#: name ``.<state file's name>.<random>`` before it
SAVING = ".saving"
#: how that file ends once luigid has written all of it, as the disk flushes it before its rename into place
FLUSHING = ".flushing"


class Save(NamedTuple):
    """How far a save of luigid's state has come."""

    #: bytes written so far into the files it saves into
    written: int
    #: whether its data is all written, being flushed to the disk (its file named :data:`FLUSHING`)
    flushing: bool


def luigid_saving(state_file: Path) -> Callable[[], Save | None]:
    """What tells how far luigid's save of ``state_file`` has come, in the files it is saving into begun since this
    was made (those a save cut before left are not its own); None while it saves into none."""
    folder, prefix = state_file.parent, f".{state_file.name}."

    def saving_files() -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as entries:
                return [
                    entry
                    for entry in entries
                    if entry.name.startswith(prefix) and entry.name.endswith((SAVING, FLUSHING))
                ]
        except OSError:
            return []

    before = {entry.inode() for entry in saving_files()}

    def written() -> Save | None:
        sizes, flushing = [], False
        for entry in saving_files():
            try:
                if entry.inode() not in before:
                    sizes.append(entry.stat().st_size)
                    flushing = flushing or entry.name.endswith(FLUSHING)
            except OSError:  # renamed meanwhile (into place, or to FLUSHING: seen at the next look)
                continue
        return Save(sum(sizes), flushing) if sizes else None

    return written


def await_stop(
    name: str,
    proc: subprocess.Popen[bytes],
    deadline: float,
    stop_timeout: float,
    saving: Callable[[], Save | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait for ``proc`` (the part ``name``, asked to stop) to exit by ``deadline`` (on ``clock``); past it, while
    ``saving()`` tells of a save under way that moved since the last look (None: none; one being flushed moves at
    every look), wait ``stop_timeout`` more from that look; else kill it, saying so. Until the deadline it sleeps
    until the exit itself (:func:`exited`), not from look to look."""
    with exited(proc) as gone:
        while (left := deadline - clock()) > 0:
            if gone(left):
                return
        seen: Save | None = None
        saw_a_save = saw_a_flush = False
        while not gone(0):
            now = saving()
            moved = now != seen or (now is not None and now.flushing)  # begun, grown, flushed, or renamed into place
            if (now is not None or saw_a_save) and moved:
                if not saw_a_save:
                    logger.warning(
                        "%s did not stop within %.0fs: it is saving its state (%s bytes so far); waiting while the "
                        "save goes on",
                        *(name, stop_timeout, None if now is None else now.written),
                    )
                if now is not None and now.flushing and not saw_a_flush:
                    logger.warning(
                        "%s has written its state (%s bytes); waiting while the disk flushes it", name, now.written
                    )
                    saw_a_flush = True
                saw_a_save, seen, deadline = True, now, clock() + stop_timeout
            elif clock() >= deadline:
                if saw_a_save:
                    logger.error("%s's save of its state made no progress within %.0fs; killing it", name, stop_timeout)
                else:
                    logger.error("%s did not stop within %.0fs; killing it", name, stop_timeout)
                proc.kill()
                proc.wait()
                return
            if gone(POLL):
                return


@contextlib.contextmanager
def exited(proc: subprocess.Popen[bytes]) -> Iterator[Callable[[float], bool]]:
    """A wait of at most its seconds for ``proc`` to exit: whether it did (reaped). It sleeps on the process's pidfd
    (:func:`nectar.wakeup.exits`), woken by the exit itself; where the kernel has none, ``Popen.wait``'s own looks."""
    from nectar import wakeup  # serve's own: luigid imports this module too (SAVING), and nothing of wakeup's

    pidfd = None if proc.poll() is not None else wakeup.exits(proc.pid)  # not reaped: the pid is still proc's

    def gone(seconds: float) -> bool:
        if pidfd is not None:
            wakeup.readable([pidfd], min(seconds, LONGEST_SLEEP))
            return proc.poll() is not None
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        yield gone
    finally:
        wakeup.close_all(pidfd)
