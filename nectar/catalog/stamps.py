"""A file's stamp: what one ``stat`` tells of whether it changed (:func:`file_stamp`)."""

from __future__ import annotations

import os
from stat import S_ISREG

#: a file's (mtime in ns, size): a rewrite shows in one or the other, even within one tick of the mtime's clock
#: when its length changed
Stamp = tuple[int, int]


def stamp_of(stat: os.stat_result) -> Stamp:
    return (stat.st_mtime_ns, stat.st_size)


def file_stamp(file: str) -> Stamp | None:
    """The stamp of the regular file ``file`` (one stat), None if it is not one (or not there)."""
    try:
        stat = os.stat(file)
    except OSError:
        return None
    return stamp_of(stat) if S_ISREG(stat.st_mode) else None
