"""The file-system calls this process makes meanwhile, by the audit events Python raises before each one."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: the events recorded: builtins/io ``open``, ``os.mkdir``, ``os.rename`` (``os.replace`` too), ``os.remove``
#: (``os.unlink``, ``Path.unlink``), ``os.link``
EVENTS = ("open", "os.mkdir", "os.rename", "os.remove", "os.link")
_recording: list[list[tuple[str, str]]] = []
_hooked = False


def _record(event: str, args: tuple[object, ...]) -> None:
    if _recording and event in EVENTS:
        path = os.fsdecode(args[0]) if isinstance(args[0], str | bytes) else repr(args[0])
        _recording[-1].append((event, path))


@contextmanager
def file_calls() -> Iterator[list[tuple[str, str]]]:
    """``(event, first path)`` of each file-system call made in the block (a hook stays for the process: it records
    only inside such a block)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_record)
        _hooked = True
    calls: list[tuple[str, str]] = []
    _recording.append(calls)
    try:
        yield calls
    finally:
        _recording.remove(calls)
