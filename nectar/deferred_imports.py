"""Modules imported on first use: what a library imports at its top but a process of ours never touches stays unloaded.

luigi imports ``requests`` (for ``luigi.rpc``'s transport) and ``jsonschema`` (for a ``DictParameter``'s ``schema``)
whoever imports it, and flask-smorest imports ``yaml`` (for ``flask openapi write --format yaml``): ~9 MB and a third
of the CPU of starting luigid or the API, which never use them (luigid serves, it calls no scheduler; the API talks
to luigid through :mod:`nectar.luigid`'s own transport; a chain's ``schema`` is checked when its class is defined,
where the chains are loaded).

While a :class:`Deferral` is open, ``import requests`` (of a module not imported yet) binds a :class:`DeferredModule`
in the importing module; the real module is imported the first time one of its attributes is read, by whichever
thread reads it first (the import system's own lock makes the others wait for it). Once the deferral ends, the name
is free again: a later ``import requests`` (a chain file's) imports the real module, as before. A module that cannot
be found is not deferred: its importer meets the ImportError at once, as it would have. ``import package.sub`` of a
deferred package imports the package for real first; a submodule the package imported itself meanwhile is not
executed a second time (:class:`_ImportedMeanwhile`).

A module can also be kept *absent* while a deferral is open (its import fails as if it were not installed): for what
a library imports only to integrate with it, when the process has nothing to integrate (tenacity's tornado retrier).

And a module's regular expressions can be compiled on first use (*lazy patterns*): while a deferral is open, what
``re.compile`` is asked by code of such a module returns a :class:`DeferredPattern`, compiled the first time one of its
attributes (``match``, ``pattern``...) is read. marshmallow compiles its ``Email`` validator's two patterns when it is
imported (a Unicode letter class, case-insensitive: ~50 ms of CPU, 6 % of the API master's start), which the API,
dumping its answers and validating no e-mail address, never matches.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from nectar.forks import lock_made_anew_in_children

#: what luigid's process does not use of what luigi imports: luigid serves RPCs, it makes none (luigi.rpc's
#: ``requests``), and no chain is defined in it (luigi.parameter's ``jsonschema``)
LUIGID_UNUSED = ("requests", "jsonschema")
#: what luigid's libraries look for only to integrate with it: tornado's log formatter colours a terminal's lines with
#: ``curses`` (and its terminfo library); luigid logs through luigi's logging, not tornado's formatter
LUIGID_ABSENT = ("curses",)
#: what the API does not use at start of what luigi and flask-smorest import (luigi.rpc's ``requests``: the API calls
#: luigid through nectar.luigid; flask_smorest.spec's ``yaml``: the CLI's ``--format yaml`` only); ``jsonschema`` is
#: read when a chain's parameter with a ``schema`` checks a value
API_UNUSED = ("requests", "jsonschema", "yaml")
#: what the API's libraries look for, while they are imported, only to integrate with it if it is installed: tenacity
#: (imported by luigi.rpc) adds its retrier of tornado coroutines, importing tornado and asyncio (~2 MB); the API has
#: no tornado coroutine to retry
API_ABSENT = ("tornado",)
#: what ``nectar worker``'s process (and the attempt processes it forks) does not use at start of what luigi imports:
#: luigi.rpc's ``requests`` (its runs reach luigid through nectar.luigid's own transport; a chain file that imports
#: requests, loaded after the deferral ends, gets the real module) and luigi.parameter's ``jsonschema``, read when a
#: chain's parameter with a ``schema`` checks a value: by the clock making a fire's task, or by a spare making its
#: first task ahead of its claim (:func:`nectar.attempt.rehearse`), not on the run's path once the spare guessed its
#: task; and ``ssl`` (with its ``_ssl`` extension, ~2.7 % of the instructions of a worker's imports), which http.client
#: and urllib.request import (for luigi.rpc's transport) to offer HTTPS: the worker and its clock talk plain HTTP to
#: luigid, and boto3's urllib3 (an S3 store's), imported after the deferral ends, imports the real module (a
#: process that calls neither imports it when http.client's ``ssl`` is first read, at an HTTPS connection's start)
WORKER_UNUSED = ("requests", "jsonschema", "ssl")
#: what luigi's libraries look for in the worker only to integrate with it: tenacity's retrier of tornado coroutines
#: (tornado and asyncio: 43 modules, ~2.4 MB): the worker retries none
WORKER_ABSENT = ("tornado",)
#: the modules whose regular expressions the API compiles when it first uses them: marshmallow's validators (the Email
#: validator's two patterns, compiled as marshmallow is imported; a URL field's, compiled as a schema is made)
API_LAZY_PATTERNS = ("marshmallow.validate",)

_LOCK = lock_made_anew_in_children(globals(), "_LOCK")


class DeferredModule(types.ModuleType):
    """Stands for the module of its name where it was imported during a :class:`Deferral`: reading any of its
    attributes imports the real module (once) and reads it there."""

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        with _LOCK:
            if sys.modules.get(name) is self:  # still deferred (its deferral is open): the real one takes its place
                del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)


class DeferredPattern:
    """Stands for ``re.compile(pattern, flags)`` asked by a module of lazy patterns during a :class:`Deferral`:
    reading any of its attributes compiles it (once; two threads at once may both compile it, to equal patterns)."""

    def __init__(self, pattern: str | bytes, flags: int) -> None:
        self._source = (pattern, flags)
        self._compiled: re.Pattern[Any] | None = None

    @property
    def compiled(self) -> bool:
        """Whether it was used, and so compiled."""
        return self._compiled is not None

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # a look for a protocol's hook (abc's __isabstractmethod__...) compiles nothing
            raise AttributeError(attribute)
        if self._compiled is None:
            self._compiled = _compile(*self._source)
        return getattr(self._compiled, attribute)


#: ``re.compile`` itself, which :func:`_lazy_compile` stands for while a deferral with lazy patterns is open
_compile = re.compile
#: the modules whose patterns are compiled on first use (how many open deferrals name each)
_LAZY: Counter[str] = Counter()


def _lazy_compile(pattern: Any, flags: int = 0) -> Any:
    """``re.compile``, but a :class:`DeferredPattern` when its caller is code of a module of lazy patterns."""
    if isinstance(pattern, str | bytes) and sys._getframe(1).f_globals.get("__name__") in _LAZY:
        return DeferredPattern(pattern, flags)
    return _compile(pattern, flags)


class _ImportedMeanwhile(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """First on ``sys.meta_path`` while a deferral is open. ``import package.sub`` of a deferred package reads the
    package's ``__path__``, which imports the package for real, which may import ``sub`` itself; the import under
    way, past its own look in ``sys.modules``, then finds ``sub`` anew and would execute it a second time. For a
    submodule of a deferred name already imported meanwhile, this hands back the module there (its own spec kept)."""

    def __init__(self) -> None:
        #: the top-level names of the open deferrals (how many defer each)
        self.names: Counter[str] = Counter()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        module = sys.modules.get(fullname)
        if module is None or "." not in fullname or fullname.partition(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, loader_state=module.__spec__)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return sys.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = module.__spec__.loader_state if module.__spec__ is not None else None  # its own again


_MEANWHILE = _ImportedMeanwhile()


class Deferral:
    """Defers the imports of ``names`` (top-level modules) from now until :meth:`end` (or the ``with`` block's end),
    has those of ``absent`` fail meanwhile, as if they were not installed, and the patterns that code of the modules
    ``lazy_patterns`` compiles meanwhile compiled on first use.

    A name already imported, or one that cannot be found, is left alone."""

    def __init__(self, names: Iterable[str], absent: Iterable[str] = (), lazy_patterns: Iterable[str] = ()) -> None:
        self.lazy_patterns = list(lazy_patterns)
        with _LOCK:
            _LAZY.update(self.lazy_patterns)
            if _LAZY:
                re.compile = _lazy_compile
        self.modules: dict[str, DeferredModule | None] = {}
        for name in names:
            if name not in sys.modules and importlib.util.find_spec(name) is not None:
                self.modules[name] = sys.modules[name] = DeferredModule(name)
        # None in sys.modules makes an import of its name fail (importlib's documented meaning), which typeshed's type
        # of sys.modules leaves out
        imported = cast("dict[str, types.ModuleType | None]", sys.modules)
        for name in absent:
            if name not in sys.modules:
                self.modules[name] = imported[name] = None
        with _LOCK:
            _MEANWHILE.names.update(list(self.modules))
            if _MEANWHILE not in sys.meta_path:
                sys.meta_path.insert(0, _MEANWHILE)

    def end(self) -> None:
        """Whatever was not used yet is imported for real by its next ``import``; who imported it keeps its stand-in,
        who looked for an absent one goes on without it. Once: a deferral ended again does nothing."""
        with _LOCK:
            _LAZY.subtract(self.lazy_patterns)
            for name in [name for name, deferrals in _LAZY.items() if deferrals <= 0]:
                del _LAZY[name]
            self.lazy_patterns = []
            if not _LAZY and re.compile is _lazy_compile:
                re.compile = _compile  # the patterns already handed out still compile on first use
            ended, self.modules = self.modules, {}
            for name, module in ended.items():
                if name in sys.modules and sys.modules[name] is module:
                    del sys.modules[name]
            _MEANWHILE.names.subtract(list(ended))
            _MEANWHILE.names += Counter()  # the names no deferral holds any more dropped
            if not _MEANWHILE.names and _MEANWHILE in sys.meta_path:
                sys.meta_path.remove(_MEANWHILE)

    def __enter__(self) -> Deferral:
        return self

    def __exit__(self, *_: object) -> None:
        self.end()
