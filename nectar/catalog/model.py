"""What the catalog tells of a chain file (ChainInfo) and of each task in it a client can launch (TaskInfo)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi

from nectar.errors import InvalidParameters
from nectar.exposure import HiddenTask
from nectar.keys import TargetKey, task_key
from nectar.luigi_internals import uncached_task
from nectar.params import ParamInfo, note_given, parse_values
from nectar.task import NectarTask

if TYPE_CHECKING:
    from nectar.declarations import Declared
    from nectar.schedules.model import ScheduleSpec
    from nectar.triggers.model import TriggerSpec


@dataclass(frozen=True)
class TaskInfo:
    """A task a client can launch, with what it takes."""

    chain_type: str
    chain: str
    name: str
    doc: str | None
    params: tuple[ParamInfo, ...]
    requires: tuple[str, ...]
    cls: type[luigi.Task] = field(repr=False, compare=False)
    #: other module-level names bound to the class, accepted wherever its name is
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.chain_type}/{self.chain}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "chain": self.chain,
            "chain_type": self.chain_type,
            "doc": self.doc,
            "params": [p.to_dict() for p in self.params],
            "requires": list(self.requires),
            "aliases": list(self.aliases),
        }

    @cached_property
    def optional(self) -> frozenset[str]:
        """The names of the parameters luigi has a value for when none is given (a default, luigi.cfg's)."""
        return frozenset(param.name for param in self.params if not param.required)

    def instantiate(self, values: Mapping[str, Any]) -> luigi.Task:
        """The luigi task for wire values (:func:`~nectar.params.parse_values` names each bad field)."""
        parsed = parse_values(self.params, values)
        try:
            # not kept for the process's life, as luigi keeps each task made; noted with the parameters given that
            # luigi has a value for without them (run_params): none in most submissions, and nothing is noted
            return note_given(uncached_task(self.cls, parsed), self.optional.intersection(parsed))
        except (ValueError, TypeError, luigi.parameter.ParameterException) as exc:
            raise InvalidParameters({"_task": [f"{type(exc).__name__}: {exc}"]}) from exc
        except Exception as exc:  # luigi writes each value as it makes the task (its task_id): one it cannot write
            unwritten = unwritable(self.cls, parsed)
            if unwritten is None:
                raise
            raise InvalidParameters(unwritten) from exc

    def key_of(self, task: luigi.Task) -> TargetKey:
        """The task's ``out.txt`` key (the same formula for plain luigi tasks; a NectarTask's own, computed once)."""
        if isinstance(task, NectarTask) and task.chain_ref() == (self.chain_type, self.chain):
            return task.target_key
        return task_key(self.chain_type, self.chain, task)


def unwritable(cls: type[luigi.Task], parsed: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """The first parameter of ``cls`` whose value (``parsed``'s, else the one luigi gives it: luigi.cfg's or its
    default) luigi cannot write as it writes a task's parameters (``serialize``, for its ``task_id``), with why; None
    if each can be. ``python -m luigi`` fails with the exception itself (an ``EnumParameter(default=None)`` not given:
    ``AttributeError: 'NoneType' object has no attribute 'name'``); a submission is told which field and what to do.
    Asked only where making the task raised."""
    family = cls.get_task_family()
    for name, param in cls.get_params():
        given = name in parsed
        try:
            value = parsed[name] if given else param.task_value(family, name)
        except Exception:  # no value at all: luigi's own error, raised as the task is made, says so
            continue
        try:
            param.serialize(value)
        except Exception as exc:
            why = f"luigi cannot write {value!r} as this {type(param).__name__}'s value ({type(exc).__name__}: {exc})"
            return {name: [why if given else f"no value given, and its default: {why}; give one"]}
    return None


@dataclass(frozen=True)
class ChainInfo:
    """One chain file: its tasks, or the error that kept it from importing."""

    chain_type: str
    name: str
    path: Path
    tasks: Mapping[str, TaskInfo]
    error: str | None = None
    #: the luigi tasks of the file that are not exposed, with why
    hidden: tuple[HiddenTask, ...] = ()
    #: True when the error is the file's import error (no task could be looked at)
    import_failed: bool = False
    #: the schedules its tasks declare, and why each one that is wrong is not used
    schedules: tuple[Declared[ScheduleSpec], ...] = ()
    schedule_errors: tuple[str, ...] = ()
    #: the data triggers its tasks declare, and why each one that is wrong is not used
    triggers: tuple[Declared[TriggerSpec], ...] = ()
    trigger_errors: tuple[str, ...] = ()
    #: whether its execution computes a parameter's default (``default=datetime.date.today()``): a task made now is
    #: made of the file executed again (:meth:`~nectar.catalog.ChainCatalog.task_now`)
    anew: bool = False

    @property
    def ref(self) -> str:
        return f"{self.chain_type}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_type": self.chain_type,
            "name": self.name,
            "error": self.error,
            "tasks": [t.to_dict() for t in self.tasks.values()],
            "hidden": [h.to_dict() for h in self.hidden],
            "schedules": [declared.id for declared in self.schedules],
            "schedule_errors": list(self.schedule_errors),
            "triggers": [declared.id for declared in self.triggers],
            "trigger_errors": list(self.trigger_errors),
        }

    def resolve(self, name: str) -> TaskInfo | None:
        """The task ``name`` names: by its own name or by an alias."""
        info = self.tasks.get(name)
        if info is None:
            info = next((t for t in self.tasks.values() if name in t.aliases), None)
        return info
