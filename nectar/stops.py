"""How ``nectar serve`` waits for a part it asked to stop: until its deadline, then killed; but luigid never while it
saves its state, which a kill would lose.

luigid saves the state it holds as it stops (every task it keeps: :func:`nectar.luigi_internals.luigid_saves_whole`
writes it into a new file beside the state file, then renames it into place), and it saves only then: killed at
the stop timeout mid-save, it left the state file it started from, every task since lost. A save's length grows with
what luigid holds and with the machine's load (48,000 tasks under load took more than the 20 s of
``NECTAR_STOP_TIMEOUT``), so the timeout is not what bounds it: past its deadline, a luigid whose save is under way
(its new file there and growing, or just renamed into place) is given the stop timeout again from each sign of
progress, and killed only once its save makes none for that long (a luigid frozen, a disk that stopped answering),
or where no save is under way (a luigid that never began to save: as any other part).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("nectar.supervisor")

#: seconds between two looks at a part that has not stopped yet (its save's progress, the clock)
POLL = 0.1
#: how a file luigid is saving its state into ends (:func:`nectar.luigi_internals.luigid_saves_whole` names it so), its
#: name ``.<state file's name>.<random>`` before it
SAVING = ".saving"


def luigid_saving(state_file: Path) -> Callable[[], int | None]:
    """What tells how far luigid's save of ``state_file`` has come: the bytes written so far into the files it is
    saving into, begun since this was made (those a save cut before left are not its own), None while it saves into
    none."""
    folder, prefix = state_file.parent, f".{state_file.name}."

    def saving_files() -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as entries:
                return [entry for entry in entries if entry.name.startswith(prefix) and entry.name.endswith(SAVING)]
        except OSError:
            return []

    before = {entry.inode() for entry in saving_files()}

    def written() -> int | None:
        sizes = []
        for entry in saving_files():
            try:
                if entry.inode() not in before:
                    sizes.append(entry.stat().st_size)
            except OSError:  # renamed into place meanwhile
                continue
        return sum(sizes) if sizes else None

    return written


def await_stop(
    name: str,
    proc: subprocess.Popen[bytes],
    deadline: float,
    stop_timeout: float,
    saving: Callable[[], int | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait for ``proc`` (the part ``name``, asked to stop) to exit by ``deadline`` (on ``clock``); past it, while
    ``saving()`` tells of a save under way that moved since the last look (its bytes so far, None: none), wait
    ``stop_timeout`` more from that look; else kill it, saying so."""
    seen: int | None = None
    saw_a_save = False
    while True:
        try:
            proc.wait(timeout=min(POLL, max(0.0, deadline - clock())))
            return
        except subprocess.TimeoutExpired:
            pass
        if clock() < deadline:
            continue
        now = saving()
        if (now is not None or saw_a_save) and now != seen:  # begun, grown, or renamed into place since the last look
            if not saw_a_save:
                logger.warning(
                    "%s did not stop within %.0fs: it is saving its state (%s bytes so far); waiting while the save "
                    "goes on",
                    *(name, stop_timeout, now),
                )
            saw_a_save, seen, deadline = True, now, clock() + stop_timeout
            continue
        if saw_a_save:
            logger.error("%s's save of its state made no progress within %.0fs; killing it", name, stop_timeout)
        else:
            logger.error("%s did not stop within %.0fs; killing it", name, stop_timeout)
        proc.kill()
        proc.wait()
        return
