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
    """Make the two anonymous files (stdout and stderr) the next step of this process will log to, in ``folder``."""
    global _made, _refused
    where = str(folder)
    if _refused or (_made is not None and _made[:2] == (where, forks.pid()) and len(_made[3]) == 2):
        return
    discard()
    fds: list[int] = []
    try:
        directory = _open_folder(folder)
        try:
            fds.extend(os.open(where, os.O_WRONLY | os.O_APPEND | os.O_TMPFILE, 0o666) for _ in range(2))
        except OSError:
            os.close(directory)
            raise
    except OSError:  # no O_TMPFILE here (EOPNOTSUPP, EISDIR on old kernels), or the folder cannot be made
        for fd in fds:
            os.close(fd)
        _refused = True
        return
    _made = (where, forks.pid(), directory, fds)


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
        for fd in (made[2], *made[3]):
            os.close(fd)
