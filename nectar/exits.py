"""A server process's end without Python's teardown: what the teardown does that anyone sees, done, then ``os._exit``.

As an interpreter ends, after its exit handlers, it frees every module and every object they hold, a collection or
two over all of them between: ~0.08 s of CPU for luigid's (~320 modules), a third of what its start costs, paid by
each stop (the suite stops ~150). A process that froze its objects (``gc.freeze``: the API's gunicorn master before
it forks, luigid before it serves) pays ~0.01 s: the collections skip them, and the cycles among them are never
freed; what it made since (luigid's tasks, workers, history) is still freed one object at a time. Nothing of that is
seen from outside the process: its files are closed by the kernel, its locks released, its memory given back. What
is seen is done first, in the teardown's order (``Py_FinalizeEx``): the threads not daemonic are waited for, the
exit handlers run (:mod:`atexit`: logging's flush and close, luigi's state save, a ``weakref.finalize``'s), and the
standard streams are flushed.

Not done, as a kill would not: an object's ``__del__`` left to the teardown (a SQLite connection not closed: its WAL
stays beside the database, whole, for the next process to read and checkpoint, as after a worker's end, which skips
the teardown too: ``nectar.gunicorn_ext.exit_without_teardown``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """End this process with ``code``, as Python's exit would, without its teardown (see the module)."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    from nectar.stdlib_internals import run_exit_callbacks  # at the end only: luigid's start imports this module

    run_exit_callbacks()
    flush_standard_streams()
    os._exit(code)


def flush_standard_streams() -> None:
    """What is still buffered of stdout and stderr written, as the interpreter's end writes it (a stream that is None
    or closed passed over)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def exit_code(ending: SystemExit) -> int | None:
    """The status Python ends with for ``ending`` where it is a number (None: a message, which Python prints)."""
    code = ending.code
    if code is None:
        return 0
    return code if isinstance(code, int) else None


def without_teardown(main: Callable[[], object]) -> NoReturn:
    """``main()``, then this process's end without the teardown, with the status its ``SystemExit`` says (0 where it
    returned). An exception other than ``SystemExit``, or a ``SystemExit`` with a message, ends it as Python does."""
    try:
        main()
    except SystemExit as ending:
        code = exit_code(ending)
        if code is None:
            raise
    else:
        code = 0
    exit_now(code)
