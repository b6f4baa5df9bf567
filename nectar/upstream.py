"""A task's upstream tasks, as far as they can be known without running it.

A task whose parameters all have values (defaults or luigi's configuration) is instantiated and its
``requires()`` called; when that is not possible or raises, the names its ``requires`` (or a
``@requires(...)`` decorator) mentions are read from the chain file's source and looked up in the
module. An upstream task is named by its class: ``Name`` for a class of the same chain file,
``<type>/<chain>/<Name>`` for one of another chain file, ``<module>.<Name>`` otherwise.
"""

from __future__ import annotations

import ast
import itertools
import types
from collections.abc import Iterator
from typing import Any

import luigi

from nectar.exposure import is_base_class, is_task_class
from nectar.forks import lock_made_anew_in_children

CHAIN_PACKAGE = "chains"
#: how many upstream tasks one ``requires()`` is read for (a generator may never end)
MAX_UPSTREAM = 1000
#: one ``ast.parse`` at a time in a process: CPython 3.11's turns its tree into Python objects with a recursion count
#: that threads share (gh-106905), and two at once fail with "AST constructor recursion depth mismatch" (``nectar
#: clock``'s schedule and trigger loops both read chain files, each in a thread)
_PARSING = lock_made_anew_in_children(globals(), "_PARSING")


def upstream_name(cls: type, module: types.ModuleType) -> str:
    """How the catalog names an upstream task class, seen from ``module``."""
    if cls.__module__ == module.__name__:
        return cls.__name__
    parts = cls.__module__.split(".")
    if len(parts) == 3 and parts[0] == CHAIN_PACKAGE:
        return f"{parts[1]}/{parts[2]}/{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _tasks_in(value: Any) -> Iterator[luigi.Task]:
    """The tasks in what ``requires()`` returns: a task, or lists, tuples, dicts and generators of them."""
    if isinstance(value, luigi.Task):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tasks_in(item)
    elif isinstance(value, str | bytes) or value is None:
        return
    else:
        try:
            items = iter(value)
        except TypeError:
            return
        for item in items:
            yield from _tasks_in(item)


def requires_by_calling(cls: type[luigi.Task]) -> list[type] | None:
    """The classes ``cls().requires()`` answers, or None when it cannot be instantiated or raises."""
    try:
        found = list(itertools.islice(_tasks_in(cls().requires()), MAX_UPSTREAM))
    except Exception:  # user code: any failure means "not known this way"
        return None
    return [type(task) for task in found]


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_requires_decorator(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and (_dotted(node.func) or "").split(".")[-1] == "requires"


def names_in_requires(source: str) -> dict[str, list[str]]:
    """Class name -> the (dotted) names its ``requires`` method or ``@requires(...)`` decorator mentions."""
    try:
        with _PARSING:
            tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        places: list[ast.AST] = [d for d in node.decorator_list if _is_requires_decorator(d)]
        places += [item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "requires"]
        names = [
            name for place in places for sub in ast.walk(place) if isinstance(sub, ast.expr) and (name := _dotted(sub))
        ]
        if places:
            found[node.name] = list(dict.fromkeys(names))
    return found


def _lookup(module: types.ModuleType, dotted: str) -> Any:
    head, *rest = dotted.split(".")
    obj = vars(module).get(head)
    for attr in rest:
        obj = getattr(obj, attr, None)
    return obj


def requires_by_reading(cls: type[luigi.Task], module: types.ModuleType, mentioned: dict[str, list[str]]) -> list[type]:
    """The task classes the source of ``cls``'s ``requires`` (or its nearest base's in the file) mentions."""
    for klass in cls.__mro__:
        if klass.__module__ == module.__name__ and klass.__name__ in mentioned:
            objs = (_lookup(module, name) for name in mentioned[klass.__name__])
            return [obj for obj in objs if is_task_class(obj) and not is_base_class(obj)]
    return []


def upstream_of(cls: type[luigi.Task], module: types.ModuleType, mentioned: dict[str, list[str]]) -> tuple[str, ...]:
    """The names of ``cls``'s upstream tasks (see the module's docstring), each once, in order."""
    classes = requires_by_calling(cls)
    if classes is None:
        classes = requires_by_reading(cls, module, mentioned)
    return tuple(dict.fromkeys(upstream_name(klass, module) for klass in classes))
