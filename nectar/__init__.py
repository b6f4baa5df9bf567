"""Datanectar: luigi chains discovered from a folder, run by workers, keyed by their parameters.

``from nectar import NectarTask, Schedule, Trigger`` is what chain files need; the rest (``Nectar``, the catalog,
stores, registry, executor) is imported from its module. They are imported on first use (PEP 562), so that a
process that needs none of them (``nectar serve``'s supervisor) does not load luigi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nectar.schedules.declared import Schedule
    from nectar.task import NectarLocalTask, NectarS3Task, NectarTask
    from nectar.triggers.declared import Trigger

__all__ = ["NectarLocalTask", "NectarS3Task", "NectarTask", "Schedule", "Trigger"]


def __getattr__(name: str) -> Any:
    if name in ("NectarLocalTask", "NectarS3Task", "NectarTask"):
        from nectar import task

        value = getattr(task, name)
    elif name in ("Schedule", "Trigger"):
        from nectar.schedules.declared import Schedule
        from nectar.triggers.declared import Trigger

        value = {"Schedule": Schedule, "Trigger": Trigger}[name]
    else:
        raise AttributeError(f"module 'nectar' has no attribute {name!r}")
    globals()[name] = value
    return value
