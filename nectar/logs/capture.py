"""Send what a task prints, logs and its subprocesses write into two log files.

Redirects the file descriptors 1 and 2 (so subprocesses and C extensions are caught), swaps
``sys.stdout``/``sys.stderr`` (so Python writers that replaced them are caught too) and adds a
root logging handler, and puts everything back afterwards. The stderr file gets each record once, at
INFO and above (the root's level is at most INFO meanwhile), or at its logger's own level if it has one
(luigi's: luigi.cfg's ``log_level``, as luigi would show them): the process's own log
(:func:`~nectar.logs.format.configure_logging`), which writes to descriptor 2 too, is set aside meanwhile.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from nectar.logs.format import process_handlers

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: how a step's stderr file shows each record: one formatter for every capture (it holds no state of its own)
_FORMATTER = logging.Formatter(LOG_FORMAT)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()


def open_log(path: Path) -> TextIO:
    """A log file, created empty, for :func:`redirect_output`: line-buffered text, each line at its end (every writer,
    a subprocess's inherited descriptor too, appends)."""
    return open_text(path, _appended)


def open_text(file: Path | int, opener: Callable[[str, int], int] | None = None) -> TextIO:
    """A log file (a path opened by ``opener``, which makes its descriptor append, or a descriptor opened to append)
    as :func:`redirect_output` writes it: line-buffered. Opened for writing (``"w"``), not appending (``"a"``): the
    descriptor appends already (``O_APPEND``), and Python's ``"a"`` only adds a seek to the end on opening, one system
    call a log (two a step) for a file that is empty (a new one) or whose writes go to its end whatever its offset."""
    return open(file, "w", buffering=1, encoding="utf-8", errors="replace", opener=opener)  # noqa: SIM115


def _appended(path: str, flags: int) -> int:
    """``open``'s opener of a new log (``"w"``: created, emptied): its descriptor appends, as ``"a"``'s would."""
    return os.open(path, flags | os.O_APPEND, 0o666)


#: the handler of this process's last capture, kept for its next (:func:`_handler`); empty while one is in use. A
#: list, taken and given back each in one C call (``pop``, ``append``): two threads capturing at once never share one
_kept: list[logging.StreamHandler[TextIO]] = []
#: the stream of the handler kept between captures: none of a step's files (it writes to none of them)
_NOWHERE: TextIO = io.StringIO()


def _handler(err: TextIO) -> logging.StreamHandler[TextIO]:
    """A handler of records to ``err``: the one kept from this process's last capture if there is one, else a new one.
    A handler made for each capture was its lock, its formatter set and its entry in logging's list of handlers made
    (and, collected, taken out of it), for each step."""
    try:
        handler = _kept.pop()
    except IndexError:  # the process's first capture, or another thread's capture holds it
        handler = logging.StreamHandler(err)
        handler.setFormatter(_FORMATTER)
        return handler
    handler.stream = err
    return handler


def _keep(handler: logging.StreamHandler[TextIO]) -> None:
    """Keep ``handler`` for the next capture, holding no file, unless the step changed it (its level, filters or
    formatter: the next step's records would be shown otherwise), or one is kept already."""
    handler.stream = _NOWHERE
    if handler.level == logging.NOTSET and not handler.filters and handler.formatter is _FORMATTER and not _kept:
        _kept.append(handler)


@contextmanager
def redirect_output(out: TextIO, err: TextIO) -> Iterator[None]:
    """Append everything written to stdout and stderr, by any means, to the two open files (:func:`open_log`)."""
    _flush_std()
    saved_fds = (os.dup(1), os.dup(2))
    saved_streams = (sys.stdout, sys.stderr)
    root = logging.getLogger()
    saved_level = root.level
    handler = _handler(err)
    aside = process_handlers(root)  # it writes to descriptor 2 too: each record would be in the file twice
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = out, err
        for process_handler in aside:
            root.removeHandler(process_handler)
        root.addHandler(handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        yield
    finally:
        _flush_std()
        root.removeHandler(handler)
        _keep(handler)
        for process_handler in aside:
            root.addHandler(process_handler)
        if root.level != saved_level:  # setLevel clears every logger's cache: only when it was changed
            root.setLevel(saved_level)
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
