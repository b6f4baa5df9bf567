"""Datanectar: luigi chains discovered from a folder, run by workers, keyed by their parameters.

``from nectar import NectarTask, Schedule, Trigger`` is what chain files need; the rest (``Nectar``, the catalog,
stores, registry, executor) is imported from its module. They are imported on first use (PEP 562), so that a
process that needs none of them (``nectar serve``'s supervisor) does not load luigi.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nectar.schedules.declared import Schedule
    from nectar.task import NectarLocalTask, NectarS3Task, NectarTask
    from nectar.triggers.declared import Trigger

#: what ``from nectar import …`` gives, and the module each comes from
_HOMES = {
    "NectarLocalTask": "nectar.task",
    "NectarS3Task": "nectar.task",
    "NectarTask": "nectar.task",
    "Schedule": "nectar.schedules.declared",
    "Trigger": "nectar.triggers.declared",
}

__all__ = ["NectarLocalTask", "NectarS3Task", "NectarTask", "Schedule", "Trigger"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nectar' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
