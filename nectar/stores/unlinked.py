"""A path opened only when no component of it is a symbolic link: Linux's ``openat2`` (5.6 and later) with
``RESOLVE_NO_SYMLINKS``, through libc's ``syscall`` (the standard library has no binding for it).

The local store's look at a key (:meth:`~nectar.stores.local.LocalStore._locate`) needs the file a key's path reaches
and whether a link was on the way. Opened with ``O_PATH``, the kernel names the file reached
(``/proc/self/fd/<fd>``), which is the path itself only when no link was on the way: a ``readlink`` of ``/proc``
(~4 us of CPU, most of it the kernel's walk of ``/proc`` and the name it writes), one call more than an open that
refuses every link (ELOOP) in the same walk of the path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Callable
from typing import cast

#: openat2's number in the syscall table the architectures share from 424 on (x86-64, arm64, riscv...); where a
#: table is offset (MIPS's), 437 is no call: ENOSYS, and :data:`ABSENT` falls back
OPENAT2 = 437
#: ``open_how.resolve``: refuse every symbolic link on the path, at its end too (magic links of /proc included)
RESOLVE_NO_SYMLINKS = 0x04
AT_FDCWD = -100
#: ``struct open_how`` (its first version, 24 bytes): flags, mode, resolve. Nothing is read from the file opened
#: (``O_PATH``), which is not inherited by a program the process runs (``O_CLOEXEC``). Not ``O_NOFOLLOW``: with it, a
#: link at the path's end would be opened as itself, where without it ``RESOLVE_NO_SYMLINKS`` refuses it (ELOOP)
HOW = struct.pack("=QQQ", getattr(os, "O_PATH", 0) | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS)
#: what a kernel without the call (before 5.6) or a filter that refuses it (seccomp) answers
ABSENT = frozenset({errno.ENOSYS, errno.EPERM})


def _syscall() -> Callable[..., int] | None:
    """libc's ``syscall``, typed for openat2's arguments; None off Linux or without it."""
    if not sys.platform.startswith("linux") or not hasattr(os, "O_PATH"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_long
    call.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t)
    return cast("Callable[..., int]", call)


class Unlinked:
    """:meth:`open` of paths: one per process (:data:`UNLINKED`), told by the kernel's first answer whether it has the
    call, then asked no more where it has not."""

    def __init__(self, syscall: Callable[..., int] | None) -> None:
        self.syscall = syscall

    @property
    def available(self) -> bool:
        return self.syscall is not None

    def open(self, path: str) -> int | None:
        """A descriptor (``O_PATH``) of the file at ``path``, reached with no symbolic link on the way or at its end;
        None where the call is not available (:attr:`available` False from then on). Raises :class:`OSError` as an
        open does: ``ELOOP`` for a link on the path, ``ENOENT`` for a missing component, ``EACCES``..."""
        syscall = self.syscall
        if syscall is None:
            return None
        fd = syscall(OPENAT2, AT_FDCWD, os.fsencode(path), HOW, len(HOW))
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        if code in ABSENT:
            self.syscall = None
            return None
        raise OSError(code, os.strerror(code), path)


#: this process's (a fork's is its parent's: the kernel is the same)
UNLINKED = Unlinked(_syscall())
