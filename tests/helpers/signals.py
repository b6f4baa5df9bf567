"""A stand-in for luigid's ``main`` between listening on its port and setting its signal handlers."""

from __future__ import annotations

import os
import signal


def announce_then_wait() -> None:
    """Say it runs (a line on stdout), then wait for a signal without a handler of its own, as luigid does for the
    few statements between binding its port and ``signal.signal(SIGTERM, ...)``.

    The wait reads the signals' wakeup pipe; it is not ``signal.pause()``: a stop that came after this process's last
    look at its signals and before its ``pause()`` (or that a thread of its own took) left it paused for good, its
    handler never run. The byte a signal writes there is read at once, whenever and wherever the signal came, and its
    handler (the prelude's) runs as the read returns."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)
    print("waiting", flush=True)
    while True:
        os.read(read, 1)
