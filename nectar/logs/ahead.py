"""A step's two live log files made ahead of its start, as anonymous files given their names when it starts.

Creating a file is mostly allocating its inode, in its folder's block group: ~5 µs, but on an ext4 without a journal
(``/sys/fs/ext4/<dev>/journal_task`` is ``<none>``) the allocator passes over every inode of that group freed in the
last 60 s (360 s while its inode table block is dirty), ~25 ns each (``recently_deleted`` in ``fs/ext4/ialloc.c``):
~200-600 µs of CPU a file where anything (a cleanup, another program) removed thousands of files near the folder
lately. No folder is safe from that: the two live logs were the largest part of a step's start → ``run()``. An
anonymous file (``O_TMPFILE``) made in the live logs folder ahead, by a spare attempt process before it has a run,
costs the same there, off the step's start; linked to its name as the step starts (``linkat`` through
``/proc/self/fd``) it costs ~4 µs. A file system without ``O_TMPFILE``, a process without ``/proc``, a name already
taken, or another process (a fork) than the one that made them: the step creates its files as before. Files made
ahead and never named vanish with their process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from nectar import forks
from nectar.logs.capture import open_text

#: files made ahead: the folder, the process that made them, a descriptor of the folder, and theirs
_made: tuple[str, int, int, list[int]] | None = None
#: ``O_TMPFILE`` or ``linkat`` refused here once: never tried again in this process
_refused = False


def make_ahead(folder: Path) -> None:
    """Make the two anonymous files (stdout and stderr) the next step of this process will log to, in ``folder``.

    The folder is opened once a process: the descriptor its files are made in and named through is kept from step to
    step (a close, an open and three walks of its path a step fewer), and opened again if the folder was removed."""
    global _made, _refused
    where = str(folder)
    if _refused or (_made is not None and _made[:2] == (where, forks.pid()) and len(_made[3]) == 2):
        return
    kept = _kept(where)
    made = None if kept is None else _made_in(kept)
    if made is None:  # none kept, or none made there (its folder removed since it was opened: EPERM, ENOENT)
        try:
            made = _made_in(_open_folder(folder))
        except OSError:  # the folder cannot be made
            made = None
    if made is None:  # no O_TMPFILE here (EOPNOTSUPP, EISDIR on old kernels), or no folder
        _refused = True
        return
    _made = (where, forks.pid(), *made)


def _made_in(directory: int) -> tuple[int, list[int]] | None:
    """``directory`` and two new files without a name, to append to, in the folder it is open on; None if they cannot
    be made there (the descriptor closed)."""
    fds: list[int] = []
    try:
        fds.extend(os.open(".", os.O_WRONLY | os.O_APPEND | os.O_TMPFILE, 0o666, dir_fd=directory) for _ in range(2))
    except OSError:
        _close(directory, *fds)
        return None
    return directory, fds


def _kept(where: str) -> int | None:
    """The descriptor of the folder ``where`` that this process made its last files in, its files not named closed;
    None (what was made discarded) for another folder, or where another process (a fork's parent) made them."""
    global _made
    made = _made
    if made is None or made[:2] != (where, forks.pid()):
        discard()
        return None
    _made = None
    _close(*made[3])
    return made[2]


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _open_folder(folder: Path) -> int:
    """A descriptor of ``folder``, made first (``mkdir -p``) only if it is missing: not two calls every prepare."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def take(path: Path) -> TextIO | None:
    """The next file made ahead in ``path``'s folder, now named ``path`` and opened as
    :func:`~nectar.logs.capture.open_log` opens a file; None if there is none (the caller creates it)."""
    global _refused
    made = _made
    if made is None or made[0] != str(path.parent) or made[1] != forks.pid() or not made[3]:
        return None
    fd = made[3][-1]
    try:
        os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=made[2], follow_symlinks=True)
    except FileExistsError:  # a step that never reached its run() left its file: it is emptied by its creation
        return None
    except OSError:  # no /proc, or a file system that refuses to name it
        _refused = True
        discard()
        return None
    made[3].pop()
    return open_text(fd)


def discard() -> None:
    """Close the files made ahead that were not named (they vanish), if this process made them."""
    global _made
    made, _made = _made, None
    if made is not None and made[1] == forks.pid():
        _close(made[2], *made[3])
