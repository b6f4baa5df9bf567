"""Datanectar: luigi chains discovered from a folder, run by workers, keyed by their parameters.

``from nectar import NectarTask, Schedule, Trigger`` is what chain files need; the rest (``Nectar``, the catalog,
stores, registry, executor) is imported from its module.
"""

from __future__ import annotations

from nectar import luigi_names
from nectar.schedules.declared import Schedule
from nectar.task import NectarLocalTask, NectarS3Task, NectarTask
from nectar.triggers.declared import Trigger

luigi_names.install(NectarTask)  # `luigi --module chains.<type>.<chain> <Task>` finds a chain task by its class name

__all__ = ["NectarLocalTask", "NectarS3Task", "NectarTask", "Schedule", "Trigger"]
