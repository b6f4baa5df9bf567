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
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections import Counter
from collections.abc import Iterable
from typing import Any

from nectar.forks import lock_made_anew_in_children

#: what luigid's process does not use of what luigi imports: luigid serves RPCs, it makes none (luigi.rpc's
#: ``requests``), and no chain is defined in it (luigi.parameter's ``jsonschema``)
LUIGID_UNUSED = ("requests", "jsonschema")
#: what the API does not use at start of what luigi and flask-smorest import (luigi.rpc's ``requests``: the API calls
#: luigid through nectar.luigid; flask_smorest.spec's ``yaml``: the CLI's ``--format yaml`` only); ``jsonschema`` is
#: read when a chain's parameter with a ``schema`` checks a value
API_UNUSED = ("requests", "jsonschema", "yaml")
#: what the API's libraries look for, while they are imported, only to integrate with it if it is installed: tenacity
#: (imported by luigi.rpc) adds its retrier of tornado coroutines, importing tornado and asyncio (~2 MB); the API has
#: no tornado coroutine to retry
API_ABSENT = ("tornado",)

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
    and has those of ``absent`` fail meanwhile, as if they were not installed.

    A name already imported, or one that cannot be found, is left alone."""

    def __init__(self, names: Iterable[str], absent: Iterable[str] = ()) -> None:
        self.modules: dict[str, DeferredModule | None] = {}
        for name in names:
            if name not in sys.modules and importlib.util.find_spec(name) is not None:
                self.modules[name] = sys.modules[name] = DeferredModule(name)
        for name in absent:
            if name not in sys.modules:
                self.modules[name] = sys.modules[name] = None  # type: ignore[assignment]
        with _LOCK:
            _MEANWHILE.names.update(list(self.modules))
            if _MEANWHILE not in sys.meta_path:
                sys.meta_path.insert(0, _MEANWHILE)

    def end(self) -> None:
        """Whatever was not used yet is imported for real by its next ``import``; who imported it keeps its stand-in,
        who looked for an absent one goes on without it. Once: a deferral ended again does nothing."""
        with _LOCK:
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
