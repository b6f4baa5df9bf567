"""review10's test app (round 56): :mod:`tests.helpers.held_app`'s, in a gunicorn whose workers can start only
``$THREAD_STARTS`` threads each: every ``threading.Thread.start`` after those raises in a worker as CPython's does when
the system has no thread to give (``RuntimeError: can't start new thread``: a container's pids limit, memory). The
master (which makes the app before it forks its workers) starts its threads as usual.

``THREAD_STARTS=2 HELD_APP_DIR=<folder> gunicorn -c python:nectar.gunicorn_conf '<APP>'``
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from tests.helpers import held_app

APP = "tests.helpers.review10_app:create_app()"
#: the variable naming how many threads each worker may start
THREAD_STARTS = "THREAD_STARTS"
_START = "start"


def create_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    master, allowed = os.getpid(), int(os.environ[THREAD_STARTS])
    start = threading.Thread.start
    started: dict[int, int] = {}

    def limited(thread: threading.Thread) -> None:
        pid = os.getpid()
        if pid != master:
            started[pid] = started.get(pid, 0) + 1
            if started[pid] > allowed:
                raise RuntimeError("can't start new thread")
        start(thread)

    setattr(threading.Thread, _START, limited)
    return held_app.create_app()
