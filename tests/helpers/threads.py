"""Where a thread is, of the test's own process (its Python calls) or of another (its kernel wait, :func:`asleep`):
the point at which a test knows a thread waits at a gate, not just that it has not gone through yet."""

from __future__ import annotations

import linecache
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _calls_of(thread: threading.Thread) -> list[str]:
    """The names of the functions ``thread`` is in now, innermost first ([] once it ended)."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def waits_in(thread: threading.Thread, function: str) -> bool:
    """Whether ``thread`` waits on a condition (``threading.Condition.wait``) called by ``function``."""
    calls = _calls_of(thread)
    return calls[:1] == ["wait"] and function in calls


def at_line(thread: threading.Thread) -> tuple[str, str]:
    """The innermost Python function ``thread`` is in and the source line it is at (a call into C, such as a lock's
    acquire, has no frame of its own: it is at the line that made it)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return ("", "")
    return (frame.f_code.co_name, linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip())


def asleep(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` of process ``pid`` sleeps in ``nanosleep`` (``time.sleep``): a signal sent now finds it
    there, not on its way in (where the signal's handler would run before the sleep, as on any bytecode)."""
    try:
        return "nanosleep" in Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
    except OSError:
        return False


def released_together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Each of ``calls`` made in a thread of its own, all released together (a barrier before each): their answers in
    order; the first that raised raises here."""
    barrier = threading.Barrier(len(calls))

    def call(made: Callable[[], T]) -> T:
        barrier.wait(timeout=60)
        return made()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, calls))
