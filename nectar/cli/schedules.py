"""The commands of schedules: ``nectar clock`` fires them (as many at once as wanted, on any machines)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from nectar.cli.local import settings_of
from nectar.logs.format import configure_logging


def cmd_clock(args: argparse.Namespace) -> int:
    """Fire every due schedule until SIGTERM, SIGINT or SIGHUP (``nectar serve`` sends SIGTERM when it stops
    or dies); each fire is claimed in the registry, so any number of clocks may run at once."""
    from nectar.schedules.loop import ScheduleLoop
    from nectar.service import Nectar

    settings = settings_of(args)
    configure_logging(settings.log_format)
    stop = threading.Event()

    def request_stop(*_: Any) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    ScheduleLoop(Nectar(settings).schedules).serve_forever(stop)
    return 0
