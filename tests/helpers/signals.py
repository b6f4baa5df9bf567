"""A stand-in for luigid's ``main`` between listening on its port and setting its signal handlers."""

from __future__ import annotations

import signal


def announce_then_wait() -> None:
    """Say it runs (a line on stdout), then wait for a signal without a handler of its own, as luigid does for the
    few statements between binding its port and ``signal.signal(SIGTERM, ...)``."""
    print("waiting", flush=True)
    signal.pause()
