"""``nectar triggers``: a table of every data trigger, from the chain files and the API, and how far each has got."""

from __future__ import annotations

import argparse

from nectar.cli.local import registry_settings_of, service_deferral, table


def cmd_triggers(args: argparse.Namespace) -> int:
    """A table of every trigger: what it watches, paused, objects seen, runs made, objects waiting, listing error."""
    with service_deferral():
        from nectar.service import Nectar

    with Nectar(registry_settings_of(args)) as nectar:
        views = nectar.triggers.views()
    rows = [["ID", "SOURCE", "TASK", "PREFIX", "GLOB", "PAUSED", "SEEN", "RUNS", "WAITING", "ERROR"]]
    for view in views:
        data = view.to_dict()
        rows.append(
            [
                view.id,
                view.source,
                view.spec.task,
                view.spec.prefix,
                view.spec.glob or "-",
                "yes" if view.paused else "no",
                str(data["objects_seen"]),
                str(data["runs_made"]),
                str(data["files_waiting"]),
                data["error"] or "-",
            ]
        )
    print(table(rows) if views else "no triggers: declare one on a task, or POST /api/triggers")
    return 0
