"""The chain module a process keeps from one run to the next: one whose file is keepable
(:mod:`nectar.catalog.keepable`), executed ahead by a spare, and left by each run exactly as executed.

Its state is noted once the module was executed, before it is rehearsed or run (:func:`watch`): its ``__dict__``, each
class it defined (its ``__dict__``, bases, names, subclasses; its properties' docstrings, its static and class
methods' ``vars()``), each luigi parameter's ``vars()``, each function's code, defaults, keyword defaults,
``__dict__``, docstring, annotations, names, module and closure cells, the contents of the plain containers among
those values (a class's or function's annotations, a function's keyword defaults, luigi's set of unconsumed names),
luigi's registry's classes of the module, what each of its imports and loggers would bind if executed again, and the
process's count of virtual subclasses registered (``abc.get_cache_token()``: a class of the file registered one).
After each run (:func:`after_run`, in :func:`nectar.reuse.put_back`) it is compared, in C: each dict's size and the
count, then every value read by ``itemgetter`` and ``attrgetter`` into one tuple, compared by identity
(``map(operator.is_, ...)``); ~434,000 instructions for the benchmarks' probe chain (9 classes, 18 parameters, 21
functions: 616 values, 71 dicts), where executing it anew and rehearsing it is ~2 million
(callgrind). Anything that differs and the module is executed anew for the next run, as every module was before. What
nectar itself sets on a class as it is used, which a fresh class computes again to the same answer (its caches: two
checked against the class where they are read, the chain of the class's file not checked, private and the same for a
kept class), is not compared (:data:`OURS`).
"""

from __future__ import annotations

import abc
import builtins
import logging
import operator
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from functools import reduce
from itertools import chain
from typing import Any

import luigi
from luigi.task_register import Register

from nectar.catalog.keepable import TRUSTED, Keepable
from nectar.luigi_internals import ReadOnceRegister, task_classes_of
from nectar.task import NectarTask

#: the attributes of a class the file made whose values are not compared, each with why: what nectar itself sets on
#: a task class as it is used (the spare's rehearsal and each run's task making set them after the snapshot, which is
#: taken before either). Each is in the class's dict from its making on (``NectarTask.__init_subclass__`` sets it to
#: None), so the dict's size still tells a name added; each is checked against the class where it is read, so kept or
#: not, what it answers is what a fresh class would. luigi sets nothing lazily on a task class but
#: ``_unconsumed_params`` (held from the class's making on by ``hold_class_shape``), a set of the configuration's
#: names it warned of once: compared, not named here (a run that adds to it would make a fresh class warn again)
OURS: Mapping[str, str] = {
    "_nectar_chain_ref": "NectarTask.chain_ref's (type, chain), read from the class's file (None until first asked)",
    "_nectar_class_params": "NectarTask._class_params's parameters, checked against the class's MRO and dict sizes",
    "_nectar_inherited": "task_params' Inherited, checked against the bases, their dicts' sizes and the metaclass",
}
_OURS = frozenset(OURS)
#: a function's state a run could change (its closure's cells, its annotations' and keyword defaults' contents are
#: read apart; not ``__closure__`` itself, which no code can set: the same tuple of the same cells for good)
_FUNCTION = operator.attrgetter(
    "__code__",
    "__defaults__",
    "__kwdefaults__",
    "__dict__",
    "__doc__",
    "__annotations__",
    "__name__",
    "__qualname__",
    "__module__",
)
#: the metaclasses whose making of a class runs only the service's code (luigi's, nectar's, the standard library's)
_KNOWN_METACLASSES = frozenset({type, abc.ABCMeta, Register, ReadOnceRegister})
#: the classes whose ``__init_subclass__`` a class of a kept file may run as it is made
_KNOWN_INIT_SUBCLASS = frozenset({object, NectarTask, luigi.Task})
#: the ``__set_name__`` a class attribute of a kept file may have: luigi's parameters' (it notes the attribute's
#: name), ``property``'s (the same, in C)
_KNOWN_SET_NAME = frozenset(
    {getattr(luigi.Parameter, "__set_name__", None), getattr(property, "__set_name__", None)} - {None}
)
#: the builtins the rule reads by name (:data:`nectar.catalog.keepable.TRUSTED`), as this process holds them
_TRUSTED = {name: vars(builtins)[name] for name in TRUSTED}
_CLASS = operator.attrgetter("__bases__", "__name__", "__qualname__", "__class__")
_CELL = operator.attrgetter("cell_contents")
_DOC = operator.attrgetter("__doc__")
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
            if _made_here(value, name):
                self._class(value)
            elif isinstance(value, types.FunctionType):
                self._function(value)
        for function in list(self._functions.values()):
            for cell in function.__closure__ or ():  # one level down: a wrapped run()'s own function
                if isinstance(contents := cell.cell_contents, types.FunctionType):
                    self._function(contents)
        for function in self._functions.values():
            self._read_many(_FUNCTION, function)  # its __annotations__ made here if it had none: then held
            self._dict(function.__dict__)
            self._dict(function.__annotations__)
            if function.__kwdefaults__ is not None:  # changed in place: the same dict
                self._dict(function.__kwdefaults__)
            for cell in function.__closure__ or ():
                self._read_one(_CELL, cell)
        self.sizes = self._sizes()
        self.expected = self._values()
        #: the count of virtual subclasses registered in the process, on any abstract class (``abc.get_cache_token``:
        #: each ``register`` moves it): one registered since on a class of the file (luigi's task classes are
        #: abstract) changed the module; one on another class makes it executed anew too, a fork's worth of work lost,
        #: nothing carried (a run registers none: the count stays over the throughput benchmark's kept runs)
        self.registered = abc.get_cache_token()

    def _read_one(self, read: Callable[[Any], Any], arg: Any) -> None:
        self.one[0].append(read)
        self.one[1].append(arg)

    def _read_many(self, read: Callable[[Any], Iterable[Any]], arg: Any) -> None:
        self.many[0].append(read)
        self.many[1].append(arg)

    def _dict(self, watched: Mapping[str, Any], leave_out: frozenset[str] = frozenset()) -> None:
        """Watch ``watched``'s size and values (but those of the names ``leave_out``), and the contents of those
        values that are plain containers (not the builtins' namespace): a dict's as a dict's (to any depth), a set's
        or a list's one level down, by identity. One level is enough: the values a keepable file gives its module and
        classes are literal constants (numbers, strings, bytes, None, booleans, tuples and frozensets of them:
        immutable, so the same object is the same value), functions (their state read apart) and luigi parameters
        made of literal arguments, whose own sets and lists (a ChoiceParameter's choices, ``_unconsumed_params``'
        names) luigi fills with those constants or with strings."""
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
        self._dict(vars(cls), _OURS)
        self._read_many(_CLASS, cls)
        self._read_many(type.__subclasses__, cls)
        for value in vars(cls).values():
            if isinstance(value, luigi.Parameter):
                self._dict(vars(value))
                self._read_one(_CLASS_OF, value)
            elif isinstance(value, types.FunctionType):
                self._function(value)
            elif isinstance(value, staticmethod | classmethod):
                self._function(value.__func__)
                self._dict(vars(value))  # the attributes it copied from its function (3.10 on), and any set on it
            elif isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    self._function(accessor)
                self._read_one(_DOC, value)  # a property's __doc__ is its own, and may be set

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
            if self._sizes() != self.sizes or abc.get_cache_token() != self.registered:
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
    builtin = vars(builtins)
    if any(namespace.get(name, builtin.get(name)) is not value for name, value in _TRUSTED.items()):
        return False
    name = module.__name__
    return all(_made_by_the_service(value) for value in namespace.values() if _made_here(value, name))


def _made_here(value: Any, name: str) -> bool:
    return isinstance(value, type) and value.__module__ == name


def _made_by_the_service(cls: type) -> bool:
    """Whether making ``cls`` ran only the service's code, none of the user's that the file's source does not show
    (a base imported from a module of the user's own): its metaclass one of luigi's, nectar's or the standard
    library's; every ``__init_subclass__`` along its MRO (each calls the next) one of :data:`_KNOWN_INIT_SUBCLASS`,
    and no ``__class_getitem__`` (an annotation in the file may subscript the class);
    each of its attributes' ``__set_name__`` luigi's parameters' or ``property``'s; no base given by
    ``__mro_entries__``."""
    if type(cls) not in _KNOWN_METACLASSES or "__orig_bases__" in vars(cls):
        return False
    if any("__init_subclass__" in vars(base) and base not in _KNOWN_INIT_SUBCLASS for base in cls.__mro__[1:]):
        return False
    if any("__class_getitem__" in vars(base) for base in cls.__mro__[1:]):  # run if an annotation subscripts it
        return False
    set_names = (getattr(type(value), "__set_name__", None) for value in vars(cls).values())
    return all(set_name is None or set_name in _KNOWN_SET_NAME for set_name in set_names)


#: the module this process keeps, as noted before its first run (None: none)
_KEPT: Snapshot | None = None


def watch(module: types.ModuleType, path: str, code: types.CodeType, rule: Keepable | None) -> None:
    """Note the state of ``module``, just executed from ``code`` (the chain file at ``path``), before anything runs
    its code again (the spare's rehearsal makes a task: its ``__init__``, its parameters' parsing) and before any run,
    to keep it if each of those leaves it so (:func:`after_run`); a module whose source is not keepable
    (``rule`` None) or whose execution the checks refuse (:func:`_checked`) is not kept, and the one kept before is
    dropped either way."""
    global _KEPT
    _KEPT = Snapshot(module, path, code, rule) if rule is not None and _checked(module, rule) else None


def kept(path: str, code: types.CodeType) -> types.ModuleType | None:
    """The module kept for the chain file at ``path`` whose source compiled to ``code`` (the file unchanged since
    it was executed), and that the runs since left as executed; None if there is none."""
    if _KEPT is None or _KEPT.path != path or _KEPT.code is not code:
        return None
    return _KEPT.module


def snapshot() -> Snapshot | None:
    """The note of the module this process keeps (None: none): the same object while the module is kept."""
    return _KEPT


def after_run() -> None:
    """After a run, in a process that takes another: the module kept is let go (the next run executes the chain
    anew) unless the run left it exactly as noted."""
    global _KEPT
    if _KEPT is not None and not _KEPT.unchanged():
        _KEPT = None
