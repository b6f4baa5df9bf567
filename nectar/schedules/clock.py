"""The clock: the schedule, trigger and wait loops of one process, each in a thread of its own, until stopped.

``nectar clock`` runs one alone; ``nectar serve`` runs one in its workers' process (``nectar worker --clock``), where
luigi, nectar and the registry are loaded already: one process fewer, ~40 MB less when idle. Each fire and each
object is claimed in the registry, so any number of clocks may run at once, wherever they run.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nectar.config import Settings
    from nectar.service import Nectar


class Clock:
    """The three loops over one :class:`~nectar.service.Nectar` (one catalog, one registry: the chain modules are
    imported once), started by :meth:`start` and stopped, their passes ended, by :meth:`stop`."""

    def __init__(self, nectar: Nectar, settings: Settings) -> None:
        from nectar.catalog.loader import AHEAD_BUDGET
        from nectar.leases import RegistryClock
        from nectar.schedules.loop import ScheduleLoop
        from nectar.triggers.loop import TriggerLoop
        from nectar.waiting import WaitLoop

        self.stopping = threading.Event()
        # fire times by the registry's clock, not this machine's: one ahead never fires a time still to come
        nectar.schedules.clock = registry_time = RegistryClock(nectar.runs)
        loops = {
            "nectar-schedules": ScheduleLoop(nectar.schedules, registry_time).serve_forever,
            "nectar-waits": WaitLoop(nectar.runs, settings.wait_poll_max).serve_forever,
            "nectar-triggers": TriggerLoop(nectar.triggers).serve_forever,
        }
        self.threads = [
            threading.Thread(target=serve, args=(self.stopping,), name=name, daemon=True)
            for name, serve in loops.items()
        ]
        # the chain files imported here, before any thread runs: a process that forks (the workers') should not
        # fork while a thread of it is inside an import (the child would wait forever on that module's lock); each
        # first in a probe child, within AHEAD_BUDGET: one whose import hangs is left to its runs, where it held up
        # the worker's every run. From then on the loops' reads execute a file here only once its probe ended it
        # within the budget, never waiting for one (ChainCatalog.refresh_ahead)
        nectar.catalog.refresh_ahead(AHEAD_BUDGET)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def request_stop(self) -> None:
        """No new pass begins; a pass under way ends (a signal handler may call this)."""
        self.stopping.set()

    def stop(self) -> None:
        """Stop and wait until every loop's pass has ended."""
        self.stopping.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join()
