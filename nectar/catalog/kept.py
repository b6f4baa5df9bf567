"""The chain module a process keeps from one run to the next: one whose file is keepable
(:mod:`nectar.catalog.keepable`), executed ahead by a spare, and left by each run exactly as executed.

Its state is noted once the module was executed and rehearsed, before any run (:func:`watch`): its ``__dict__``, each
class it defined (its ``__dict__``, bases, names, subclasses, virtual subclasses), each luigi parameter's ``vars()``,
each function's code, defaults, keyword defaults, ``__dict__`` and closure cells, the contents of the plain containers
among those values (a class's annotations, luigi's set of unconsumed names), luigi's registry's classes of the module,
what each of its imports and loggers would bind if executed again. After each run (:func:`after_run`, in
:func:`nectar.reuse.put_back`) it is compared, in C: each dict's size, then every value read by ``itemgetter`` and
``attrgetter`` into one tuple, compared by identity (``map(operator.is_, ...)``); ~416,000 instructions for the
benchmarks' probe chain (9 classes, 18 parameters: ~600 values), where executing it anew and rehearsing it is ~2 million
(callgrind). Anything that differs and the module is executed anew for the next run, as every module was before. What
nectar itself sets on a class as it is used, which a fresh class computes again to the same answer (its caches, each
checked against the class where it is read), is not compared (:data:`OURS`).
"""

from __future__ import annotations

import abc
import logging
import operator
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from functools import reduce
from itertools import chain
from typing import Any

import luigi

from nectar.catalog.keepable import Keepable
from nectar.luigi_internals import task_classes_of
from nectar.stdlib_internals import abc_registry

logger = logging.getLogger(__name__)

#: a task class's own caches, set by nectar as it is used (:class:`~nectar.task.NectarTask`,
#: :func:`~nectar.luigi_internals.task_params`): each checked against the class where it is read, so kept or not,
#: what it answers is what a fresh class would
OURS = frozenset({"_nectar_chain_ref", "_nectar_class_params", "_nectar_inherited"})
#: a function's state a run could change (its closure's cells are read apart)
_FUNCTION = operator.attrgetter("__code__", "__defaults__", "__kwdefaults__", "__dict__", "__closure__")
_CLASS = operator.attrgetter("__bases__", "__name__", "__qualname__", "__class__")
_CELL = operator.attrgetter("cell_contents")
_CLASS_OF = operator.attrgetter("__class__")


class Snapshot:
    """A module's state as :func:`watch` noted it: the dicts whose sizes are compared, and the readers (each a
    callable and its argument) whose answers are compared by identity: ``one`` answers an object, ``many`` an
    iterable of them. A dict's values are read by its keys as noted (a key gone: KeyError); its size tells a key
    added, so no key is listed again."""

    def __init__(self, module: types.ModuleType, path: str, code: types.CodeType, rule: Keepable) -> None:
        self.module, self.path, self.code = module, path, code
        self.dicts: list[Mapping[str, Any]] = []
        self._seen: set[int] = set()
        self.one: tuple[list[Callable[[Any], Any]], list[Any]] = ([], [])
        self.many: tuple[list[Callable[[Any], Iterable[Any]]], list[Any]] = ([], [])
        self._functions: dict[int, types.FunctionType] = {}
        name = module.__name__
        namespace = vars(module)
        self._dict(namespace)
        self._read_one(sys.modules.get, name)
        self._read_one(_CLASS_OF, module)
        self._read_many(task_classes_of, name)
        self._read_many(_fresh_imports, rule.imports)
        if rule.loggers:
            self._read_many(_fresh_loggers, (namespace, rule.loggers))
        for value in list(namespace.values()):
            if isinstance(value, type) and value.__module__ == name:
                self._class(value)
            elif isinstance(value, types.FunctionType):
                self._function(value)
        for function in list(self._functions.values()):
            for cell in function.__closure__ or ():  # one level down: a wrapped run()'s own function
                if isinstance(contents := cell.cell_contents, types.FunctionType):
                    self._function(contents)
        for function in self._functions.values():
            self._read_many(_FUNCTION, function)
            self._dict(function.__dict__)
            for cell in function.__closure__ or ():
                self._read_one(_CELL, cell)
        self.sizes = self._sizes()
        self.expected = self._values()

    def _read_one(self, read: Callable[[Any], Any], arg: Any) -> None:
        self.one[0].append(read)
        self.one[1].append(arg)

    def _read_many(self, read: Callable[[Any], Iterable[Any]], arg: Any) -> None:
        self.many[0].append(read)
        self.many[1].append(arg)

    def _dict(self, watched: Mapping[str, Any], leave_out: frozenset[str] = frozenset()) -> None:
        """Watch ``watched``'s size and values (but those of the names ``leave_out``), and the contents of those
        values that are plain containers (not the builtins' namespace)."""
        if id(watched) in self._seen:
            return
        self._seen.add(id(watched))
        self.dicts.append(watched)
        names = [name for name in watched if name not in leave_out]
        if len(names) > 1:
            self._read_many(operator.itemgetter(*names), watched)
        elif names:
            self._read_one(operator.itemgetter(*names), watched)
        for name in names:
            value = watched[name]
            if type(value) is dict and name != "__builtins__":
                self._dict(value)
            elif type(value) in (set, list):
                self._read_many(tuple, value)

    def _class(self, cls: type) -> None:
        self._dict(vars(cls), OURS)
        self._read_many(_CLASS, cls)
        self._read_many(type.__subclasses__, cls)
        if isinstance(cls, abc.ABCMeta):  # its virtual subclasses (``register``): luigi's task classes are abstract
            self._read_many(abc_registry, cls)
        for value in vars(cls).values():
            if isinstance(value, luigi.Parameter):
                self._dict(vars(value))
                self._read_one(_CLASS_OF, value)
            elif isinstance(value, types.FunctionType):
                self._function(value)
            elif isinstance(value, staticmethod | classmethod):
                self._function(value.__func__)
            elif isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    self._function(accessor)

    def _function(self, function: Any) -> None:
        if isinstance(function, types.FunctionType):
            self._functions.setdefault(id(function), function)

    def _sizes(self) -> tuple[int, ...]:
        return tuple(map(len, self.dicts))

    def _values(self) -> tuple[Any, ...]:
        return (*map(operator.call, *self.one), *chain.from_iterable(map(operator.call, *self.many)))

    def unchanged(self) -> bool:
        """Whether the module is still exactly as noted: every dict of the same size with the same keys, the same
        objects everywhere."""
        try:
            if self._sizes() != self.sizes:
                return False
            now = self._values()
        except Exception:  # a key gone, a cell emptied, a binding gone: changed
            return False
        return len(now) == len(self.expected) and all(map(operator.is_, now, self.expected))


def _fresh_imports(imports: tuple[tuple[str, str, tuple[str, ...]], ...]) -> tuple[Any, ...]:
    """What each of a module's imports would bind if executed now (from ``sys.modules``; KeyError or AttributeError
    if one would not)."""
    modules = sys.modules
    return tuple([reduce(getattr, attrs, modules[module]) for _, module, attrs in imports])


def _fresh_loggers(given: tuple[dict[str, Any], tuple[tuple[str, str | None], ...]]) -> tuple[Any, ...]:
    """The logger each of a module's ``logging.getLogger(...)`` would answer now."""
    namespace, loggers = given
    return tuple([logging.getLogger(namespace["__name__"] if name is None else name) for _, name in loggers])


def _checked(module: types.ModuleType, rule: Keepable) -> bool:
    """What the source could not say, on the module it made: each import bound what a fresh import binds, each
    logger is logging's, each class attribute made by a call is an instance of exactly the luigi parameter class
    its callee names (luigi's own, not a subclass of it defined elsewhere)."""
    namespace = vars(module)
    try:
        if _fresh_imports(rule.imports) != tuple(namespace[bound] for bound, _, _ in rule.imports):
            return False
        if rule.loggers and namespace.get("logging") is not logging:
            return False
        if any(
            namespace[bound] is not found
            for (bound, _), found in zip(rule.loggers, _fresh_loggers((namespace, rule.loggers)), strict=True)
        ):
            return False
        for cls, attribute, path in rule.parameters:
            callee = reduce(getattr, path[1:], namespace[path[0]])
            if not (isinstance(callee, type) and issubclass(callee, luigi.Parameter)):
                return False
            if callee.__module__.split(".")[0] != "luigi" or type(vars(namespace[cls])[attribute]) is not callee:
                return False
    except (KeyError, AttributeError):
        return False
    return True


#: the module this process keeps, as noted before its first run (None: none)
_KEPT: Snapshot | None = None


def watch(module: types.ModuleType, path: str, code: types.CodeType, rule: Keepable | None) -> None:
    """Note the state of ``module``, just executed from ``code`` (the chain file at ``path``) and rehearsed, before
    any run, to keep it if each run leaves it so (:func:`after_run`); a module whose source is not keepable
    (``rule`` None) or whose execution the checks refuse (:func:`_checked`) is not kept, and the one kept before is
    dropped either way."""
    global _KEPT
    _KEPT = Snapshot(module, path, code, rule) if rule is not None and _checked(module, rule) else None


def kept(path: str, code: types.CodeType) -> types.ModuleType | None:
    """The module kept for the chain file at ``path`` whose source compiled to ``code`` (the file unchanged since
    it was executed), and that the runs since left as executed; None if there is none."""
    if _KEPT is None or _KEPT.path != path or _KEPT.code is not code:
        return None
    logger.debug("chain module %s kept for this run", _KEPT.module.__name__)
    return _KEPT.module


def after_run() -> None:
    """After a run, in a process that takes another: the module kept is let go (the next run executes the chain
    anew) unless the run left it exactly as noted."""
    global _KEPT
    if _KEPT is not None and not _KEPT.unchanged():
        logger.debug("chain module %s changed by its run: executed anew for the next", _KEPT.module.__name__)
        _KEPT = None
