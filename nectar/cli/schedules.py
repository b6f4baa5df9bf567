"""The commands of schedules: ``nectar schedules`` lists them, ``nectar backfill`` fires one over a past range,
``nectar clock`` fires them (as many at once as wanted, on any machines)."""

from __future__ import annotations

import argparse
import signal
from collections import Counter
from typing import TYPE_CHECKING, Any

from nectar import exits
from nectar.cli.local import registry_settings_of, service_deferral, settings_of, table
from nectar.config import load_luigi_config
from nectar.logs.format import configure_logging

if TYPE_CHECKING:
    from nectar.schedules.book import ScheduleView


def when(view: ScheduleView) -> str:
    """A schedule's times as a person reads them: its cron or its interval, and its zone."""
    timing = view.spec.timing
    every = timing.cron if timing.cron is not None else f"every {timing.interval_s}s"
    return f"{every} ({timing.timezone})"


def last_fire(view: ScheduleView) -> str:
    """The last fire's state, and its run's job status when it made one."""
    if view.last_fire is None:
        return "-"
    status = f" ({view.last_run.state.value})" if view.last_run is not None else ""
    return f"{view.spec.timing.iso(view.last_fire.fire_time)} {view.last_fire.state}{status}"


def cmd_schedules(args: argparse.Namespace) -> int:
    """A table of every schedule, from the chain files and the API."""
    with service_deferral():
        from nectar.service import Nectar

    with Nectar(registry_settings_of(args)) as nectar:
        views = nectar.schedules.views()
    rows = [["ID", "SOURCE", "TASK", "WHEN", "PAUSED", "NEXT FIRE", "LAST FIRE"]]
    for view in views:
        upcoming = view.spec.timing.iso(view.next_fires[0]) if view.next_fires else "-"
        paused = "yes" if view.paused else "no"
        rows.append([view.id, view.source, view.spec.task, when(view), paused, upcoming, last_fire(view)])
    print(table(rows) if views else "no schedules: declare one on a task, or POST /api/schedules")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Fire a schedule for every fire time in [--start, --end]; print what was queued at once and what waits."""
    with service_deferral():
        from nectar.service import Nectar

    with Nectar(settings_of(args)) as nectar:  # its argument errors named first; a new registry is where it writes
        book = nectar.schedules
        backfill = book.backfill(args.schedule_id, args.start, args.end)
        timing = book.view(args.schedule_id).spec.timing
        fires = book.fires(args.schedule_id, len(backfill.fire_times) or 1, backfill.id)
    states = Counter(fire.state for fire, _ in fires)
    counted = ", ".join(f"{states[state]} {state}" for state in sorted(states)) or "nothing new"
    print(
        f"backfill {backfill.id} of {backfill.schedule_id}: {len(backfill.fire_times)} fire times, "
        f"{backfill.existing} fired before; {counted}"
    )
    rows = [["FIRE TIME", "STATE", "RUN", "JOB STATUS"]]
    for fire, run in sorted(fires, key=lambda pair: pair[0].fire_time):
        status = run.state.value if run is not None else "-"
        rows.append([timing.iso(fire.fire_time), fire.state, fire.run_id or "-", status])
    if fires:
        print(table(rows))
    print(f"progress: GET /api/schedules/{backfill.schedule_id}/fires?backfill={backfill.id}")
    return 0


def cmd_clock(args: argparse.Namespace) -> int:
    """Fire every due schedule, poll every data trigger, and check what WAITING runs wait for (each loop in a
    thread of its own: :class:`~nectar.schedules.clock.Clock`) until SIGTERM, SIGINT or SIGHUP; each fire and each
    object is claimed in the registry, so any number of clocks may run at once."""
    from nectar import lifeline

    lifeline.stops_exit_until_handled()  # until the handlers below (the clock imports the chain files before)
    with service_deferral():  # as nectar worker --clock imports them
        from nectar.schedules.clock import Clock
        from nectar.service import Nectar

    settings = settings_of(args)
    configure_logging(settings.log_format)
    with Nectar(settings) as nectar:  # its registry closed whatever the clock's stop raises
        load_luigi_config(settings.luigi_config)  # a schedule's task takes its luigi.cfg values, as the worker's
        clock = Clock(nectar, settings)

        def request_stop(*_: Any) -> None:
            clock.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, request_stop)
        clock.start()
        try:
            while not clock.stopping.wait(1.0):  # woken at once by a signal (its handler runs in this thread)
                pass
        finally:
            clock.stop()
    exits.exit_now(0)  # its registry closed, its threads stopped: the teardown's CPU skipped (nectar.exits)
