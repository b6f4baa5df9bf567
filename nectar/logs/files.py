"""Find a task's stdout or stderr: the live file while it runs, the stored copy once it ended."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Literal

from nectar.errors import NotFound
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.stores import TargetStore
from nectar.task import live_log_paths

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, ...] = ("stdout", "stderr")
_STORED = {"stdout": STDOUT_FILE, "stderr": STDERR_FILE}


def _chunks(handle: IO[bytes], chunk_size: int = 1 << 16) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def open_log(key: TargetKey, stream: Stream, store: TargetStore) -> Iterator[bytes]:
    """The bytes of one log of the task whose folder ``key`` is in; :class:`NotFound` if none."""
    if stream not in _STORED:
        raise ValueError(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}")
    live = live_log_paths(key)[STREAMS.index(stream)]
    try:
        return _chunks(live.open("rb"))  # opened now: a run ending meanwhile cannot pull it away
    except FileNotFoundError:
        pass
    stored = key.with_file(_STORED[stream])
    if store.exists(stored):
        return store.iter_bytes(stored)
    raise NotFound(f"no {stream} log for {key.folder}: the task is not running and left no log")
