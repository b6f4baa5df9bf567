"""Which luigi tasks a chain module exposes, under which names, and why it hides the others.

The rule, in this one place:

- a *task of the file* is a class that subclasses ``luigi.Task``, is bound to a module-level name and
  is defined by the chain file itself (not imported);
- it is *exposed* when a module-level name bound to it ends in ``Task`` (the seed's rule) or when the
  module's ``__nectar_tasks__`` list names it;
- it is exposed under its class's own ``__name__``, the name its keys, ``params.txt`` and logs use
  (``NectarTask.target_key``); the other module-level names bound to it are *aliases*, accepted
  wherever a task's name is and resolved to that one;
- every other task of the file is *hidden*, with the reason; so is a task class imported from
  another file of the user's, and one of luigi's (or Datanectar's) that no task of the file subclasses
  (``from luigi.tools.range import RangeDaily``, to be run: the reason says how to run it here); the base classes
  the file's tasks subclass are left out;
- a name in ``__nectar_tasks__`` that is no task of the file is the chain's error.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import luigi

from nectar.keys import is_name

#: the module-level list of class names a chain file exposes besides those ending in ``Task``
EXPOSE_LIST = "__nectar_tasks__"
TASK_SUFFIX = "Task"
#: packages whose task classes are base classes, not the user's tasks
BASE_PACKAGES = ("luigi", "nectar")


@dataclass(frozen=True)
class HiddenTask:
    """A luigi task of a chain file that is not exposed, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class Exposure:
    """What a chain module exposes: its tasks by name, their aliases, the hidden ones, or its error."""

    tasks: Mapping[str, type[luigi.Task]]
    aliases: Mapping[str, str] = field(default_factory=dict)
    hidden: tuple[HiddenTask, ...] = ()
    error: str | None = None

    def resolve(self, name: str) -> str | None:
        """The exposed name ``name`` stands for (itself or the class an alias is bound to), or None."""
        return name if name in self.tasks else self.aliases.get(name)

    def aliases_of(self, name: str) -> tuple[str, ...]:
        return tuple(alias for alias, target in self.aliases.items() if target == name)

    def hidden_reason(self, name: str) -> str | None:
        return next((h.reason for h in self.hidden if h.name == name), None)


def is_task_class(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, luigi.Task)


def _luigis_own(cls: type) -> str:
    """Why a task class of luigi's (or Datanectar's) imported into a chain file and subclassed by none of its tasks
    (``from luigi.tools.range import RangeDaily``, to be run as ``python -m luigi --module <chain> RangeDaily ...``)
    is not exposed, and how to run it here."""
    return (
        f"{cls.__module__}.{cls.__name__}, imported: a class of {cls.__module__.split('.')[0]}'s, not a task of this "
        "file (python -m luigi runs any class luigi registered; the service runs the tasks a chain file defines, each "
        f"under its own keys): to run it here, define one from it in this file (class My{cls.__name__}Task"
        f"({cls.__name__}): ...)"
    )


def _runnable(cls: type[luigi.Task]) -> bool:
    """Whether a task class of luigi's is one a user could mean to run as it is (``RangeDaily``: luigi's command line
    runs it), not a base to be subclassed or named (``Task``, ``ExternalTask``, ``WrapperTask``, ``Config``,
    ``ExternalProgramTask``, ``S3PathTask``, Datanectar's ``NectarTask``): it has a ``run`` (an ``ExternalTask``'s is
    None: there is nothing to run) and requires or outputs something of its own (luigi's ``Task`` neither)."""
    if cls.__module__.split(".")[0] != "luigi" or cls.run is None:
        return False
    return cls.requires is not luigi.Task.requires or cls.output is not luigi.Task.output


def is_base_class(cls: type) -> bool:
    """A task class of luigi or of Datanectar itself (``luigi.Task``, ``NectarTask``, ``luigi.contrib``...)."""
    return cls.__module__.split(".")[0] in BASE_PACKAGES


def names_of(module: types.ModuleType) -> dict[type[luigi.Task], list[str]]:
    """Each luigi task class bound at ``module``'s top level, with every name bound to it, in order: read from a copy
    of its names (made at once, the GIL held), which another thread, a warning's ``__warningregistry__`` or a value's
    own ``__class__`` may change while each value is looked at."""
    found: dict[type[luigi.Task], list[str]] = {}
    for name, obj in vars(module).copy().items():
        if is_task_class(obj):
            found.setdefault(obj, []).append(name)
    return found


def _listed(module: types.ModuleType) -> tuple[list[str], str | None]:
    """The names in ``__nectar_tasks__`` (none when it is absent), or why the list is unusable."""
    value = vars(module).get(EXPOSE_LIST, [])
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        return [], f"it must be a list of class names, not a {type(value).__name__}"
    bad = [repr(item) for item in value if not isinstance(item, str)]
    if bad:
        return [], f"it must hold class names (strings), not {', '.join(bad)}"
    return sorted(value), None


def _list_errors(module: types.ModuleType, listed: list[str]) -> list[str]:
    errors = []
    for name in listed:
        obj = vars(module).get(name)
        if obj is None:
            errors.append(f"{name} is not defined in this file")
        elif not is_task_class(obj):
            errors.append(f"{name} is not a luigi task class (it is a {type(obj).__name__})")
        elif obj.__module__ != module.__name__:
            errors.append(f"{name} is imported from {obj.__module__}: a task is exposed by the file that defines it")
    return errors


def _why_hidden(cls: type[luigi.Task]) -> str:
    if cls.run is luigi.Task.run and cls.requires is luigi.Task.requires:
        why = f"it defines no run() and no requires() (a base class?); add it to {EXPOSE_LIST} to expose it"
    else:
        why = f"its name does not end in {TASK_SUFFIX}; add it to {EXPOSE_LIST} to expose it"
    unused = [attribute for attribute in ("schedules", "triggers") if _declares(getattr(cls, attribute, None))]
    return why + (f" (its {' and '.join(unused)} are not used while it is hidden)" if unused else "")


def _declares(value: object) -> bool:
    """Whether a class attribute holds a schedule or trigger declaration (one, or a list of them)."""
    from nectar.declarations import Declaration

    items = value if isinstance(value, list | tuple) else [value]
    return any(isinstance(item, Declaration) for item in items)


def exposure(module: types.ModuleType) -> Exposure:
    """Apply the rule (see the module's docstring) to an imported chain module."""
    listed, error = _listed(module)
    errors = [error] if error else _list_errors(module, listed)
    bound = names_of(module)
    tasks: dict[str, type[luigi.Task]] = {}
    aliases: dict[str, str] = {}
    hidden: list[HiddenTask] = []
    for cls, names in bound.items():
        if cls.__module__ != module.__name__:
            if not is_base_class(cls):
                hidden += [
                    HiddenTask(name, f"imported from {cls.__module__}; it is not a task of this file") for name in names
                ]
            elif _runnable(cls) and not any(issubclass(other, cls) for other in bound if other is not cls):
                hidden += [HiddenTask(name, _luigis_own(cls)) for name in names]  # imported to be run
            continue
        own = cls.__name__
        if not any(name.endswith(TASK_SUFFIX) or name in listed for name in names):
            hidden.append(HiddenTask(own, _why_hidden(cls)))
        elif not is_name(own):
            hidden.append(HiddenTask(own, "its class name is not made of [A-Za-z0-9_]"))
        elif own in tasks:
            hidden.append(HiddenTask(own, f"two task classes of this file are named {own}: rename one"))
        else:
            tasks[own] = cls
            aliases.update((name, own) for name in names if name != own)
    if errors:
        return Exposure({}, {}, tuple(hidden), f"{EXPOSE_LIST}: " + "; ".join(errors))
    ordered = {name: tasks[name] for name in sorted(tasks)}
    return Exposure(
        ordered, {alias: aliases[alias] for alias in sorted(aliases)}, tuple(sorted(hidden, key=lambda h: h.name))
    )
