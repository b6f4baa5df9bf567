"""Find the chains under a folder and the tasks in them, by the seed's naming rules.

``<chains>/<type>/<name>_chain.py`` is a chain; the luigi tasks it exposes (those named ``...Task``
or listed in ``__nectar_tasks__``), their aliases and the tasks it hides, with why, are decided by
:mod:`nectar.exposure`; their upstream tasks by :mod:`nectar.upstream`. Modules are
compiled from their source (no stale bytecode) under the name ``chains.<type>.<chain>``; a
module that fails to import is listed with its error. :class:`ChainCatalog` re-imports a file
only when its mtime or size changed.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

import luigi

from nectar.errors import ChainNotFound, InvalidParameters, TaskNotFound
from nectar.exposure import HiddenTask, exposure
from nectar.keys import TargetKey, is_name
from nectar.luigi_internals import forget_task_classes
from nectar.params import ParamInfo, params_of
from nectar.task import chain_module
from nectar.upstream import names_in_requires, upstream_of

CHAIN_SUFFIX = "_chain.py"


def module_name(chain_type: str, chain: str) -> str:
    return chain_module(chain_type, chain)


def _forget_tasks(name: str) -> None:
    forget_task_classes(name)  # a reloaded module's old classes would make their families ambiguous


def load_chain_module(path: Path, chain_type: str, chain: str) -> types.ModuleType:
    """Compile and execute a chain file as a fresh module ``chains.<type>.<chain>``."""
    if not (is_name(chain_type) and is_name(chain)):
        raise ValueError(f"refusing to import {path}: names must be [A-Za-z0-9_]")
    name = module_name(chain_type, chain)
    source = path.read_bytes()
    code = compile(source, str(path), "exec", dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    _forget_tasks(name)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        _forget_tasks(name)
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    return module


def describe_import_error(exc: BaseException, path: Path) -> str:
    """Why a chain file failed to import, with where in it: ``SyntaxError: expected ':' (x_chain.py, line 31)``.

    A syntax error names its own line; any other error the innermost frame of the chain file.
    """
    what = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg} ({Path(exc.filename or path).name}, line {exc.lineno})"
    lines = [line for file, line in _frames(exc) if file == str(path)]
    return f"{what} ({path.name}, line {lines[-1]})" if lines else what


def _frames(exc: BaseException) -> list[tuple[str, int | None]]:
    return [(frame.filename, frame.lineno) for frame in traceback.extract_tb(exc.__traceback__)]


def is_chain_task(name: str, obj: Any, module: types.ModuleType) -> bool:
    """True if ``name`` is the exposed name of ``obj``, a task of ``module`` (see :mod:`nectar.exposure`)."""
    tasks = exposure(module).tasks
    return obj is not None and tasks.get(name) is obj


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

    def param(self, name: str) -> ParamInfo | None:
        return next((p for p in self.params if p.name == name), None)

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

    def parse_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Parameter values from wire values; :class:`InvalidParameters` names each bad field."""
        errors: dict[str, list[str]] = {}
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            info = self.param(name)
            if info is None:
                errors[name] = [f"unknown parameter (known: {', '.join(p.name for p in self.params) or 'none'})"]
                continue
            try:
                parsed[name] = info.parse(raw)
            except ValueError as exc:
                errors[name] = [str(exc)]
        for info in self.params:
            if info.required and info.name not in values:
                errors[info.name] = ["missing required parameter"]
        if errors:
            raise InvalidParameters(errors)
        return parsed

    def instantiate(self, values: Mapping[str, Any]) -> luigi.Task:
        """The luigi task for wire values."""
        return self.build(self.parse_params(values))

    def build(self, parsed: Mapping[str, Any]) -> luigi.Task:
        """The luigi task for values already parsed (by :meth:`parse_params` or an equivalent schema)."""
        try:
            return self.cls(**parsed)
        except (ValueError, TypeError, luigi.parameter.ParameterException) as exc:
            raise InvalidParameters({"_task": [f"{type(exc).__name__}: {exc}"]}) from exc

    def key_of(self, task: luigi.Task) -> TargetKey:
        """The task's ``out.txt`` key (the same formula for plain luigi tasks)."""
        params = task.to_str_params(only_significant=True, only_public=True)
        return TargetKey.for_task(self.chain_type, self.chain, self.name, params)


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
        }

    def resolve(self, name: str) -> TaskInfo | None:
        """The task ``name`` names: by its own name or by an alias."""
        info = self.tasks.get(name)
        if info is None:
            info = next((t for t in self.tasks.values() if name in t.aliases), None)
        return info


def inspect_chain(path: Path, chain_type: str, chain: str) -> ChainInfo:
    """Import one chain file and describe its tasks (or its import error)."""
    try:
        module = load_chain_module(path, chain_type, chain)
    except Exception as exc:  # any failure of user code: listed, never fatal
        return ChainInfo(chain_type, chain, path, {}, error=describe_import_error(exc, path), import_failed=True)
    found = exposure(module)
    mentioned = names_in_requires(path.read_text(encoding="utf-8", errors="replace"))
    tasks = {
        name: TaskInfo(
            chain_type=chain_type,
            chain=chain,
            name=name,
            doc=inspect.getdoc(cls) if cls.__doc__ else None,
            params=params_of(cls),
            requires=upstream_of(cls, module, mentioned),
            cls=cls,
            aliases=found.aliases_of(name),
        )
        for name, cls in found.tasks.items()
    }
    return ChainInfo(chain_type, chain, path, tasks, error=found.error, hidden=found.hidden)


class ChainCatalog:
    """The chains under ``root``, kept in step with the files by their mtimes and sizes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._chains: dict[tuple[str, str], ChainInfo] = {}
        self._stamps: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()
        #: files that look like chains but were not imported, with the reason
        self.skipped: dict[str, str] = {}

    def _scan(self) -> dict[tuple[str, str], tuple[Path, tuple[int, int]]]:
        found: dict[tuple[str, str], tuple[Path, tuple[int, int]]] = {}
        skipped: dict[str, str] = {}
        try:
            type_dirs = [e for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith((".", "_"))]
        except FileNotFoundError:
            type_dirs = []
        for type_dir in type_dirs:
            for entry in os.scandir(type_dir.path):
                if not entry.name.endswith(CHAIN_SUFFIX) or not entry.is_file():
                    continue
                chain = entry.name[: -len(".py")]
                if not (is_name(type_dir.name) and is_name(chain)):
                    skipped[entry.path] = "names must be made of [A-Za-z0-9_]"
                    continue
                stat = entry.stat()
                found[(type_dir.name, chain)] = (Path(entry.path), (stat.st_mtime_ns, stat.st_size))
        self.skipped = skipped
        return found

    def refresh(self) -> bool:
        """Import new and changed chain files, forget removed ones; True if anything changed."""
        with self._lock:
            found = self._scan()
            changed = False
            for ref in set(self._chains) - set(found):
                self._forget(ref)
                changed = True
            for ref, (path, stamp) in found.items():
                changed = self._sync(ref, path, stamp) or changed
            return changed

    def refresh_chain(self, chain_type: str, chain: str) -> None:
        """Bring one chain in step with its file, with one stat (a submission's hot path: no folder scan)."""
        ref = (chain_type, chain)
        path = self.root / chain_type / f"{chain}.py"
        stamp = None
        named = is_name(chain_type) and is_name(chain) and not chain_type.startswith("_")  # as _scan would find it
        if named and path.name.endswith(CHAIN_SUFFIX):
            try:
                stat = path.stat()
            except OSError:
                pass
            else:
                stamp = (stat.st_mtime_ns, stat.st_size) if S_ISREG(stat.st_mode) else None
        with self._lock:
            if stamp is not None:
                self._sync(ref, path, stamp)
            elif ref in self._chains:
                self._forget(ref)

    def _sync(self, ref: tuple[str, str], path: Path, stamp: tuple[int, int]) -> bool:
        """(Re)import a chain whose file's stamp changed; True if it did. Called with the lock held."""
        if self._stamps.get(ref) == stamp:
            return False
        self._chains[ref] = inspect_chain(path, *ref)
        self._stamps[ref] = stamp
        return True

    def _forget(self, ref: tuple[str, str]) -> None:
        """Drop a chain whose file is gone. Called with the lock held."""
        del self._chains[ref]
        self._stamps.pop(ref, None)
        _forget_tasks(module_name(*ref))
        sys.modules.pop(module_name(*ref), None)

    def chains(self) -> list[ChainInfo]:
        self.refresh()
        return [self._chains[ref] for ref in sorted(self._chains)]

    def types(self) -> dict[str, list[ChainInfo]]:
        grouped: dict[str, list[ChainInfo]] = {}
        for info in self.chains():
            grouped.setdefault(info.chain_type, []).append(info)
        return grouped

    def chain(self, chain_type: str, chain: str) -> ChainInfo:
        self.refresh()
        return self._chain(chain_type, chain)

    def _chain(self, chain_type: str, chain: str) -> ChainInfo:
        info = self._chains.get((chain_type, chain))
        if info is None:
            raise ChainNotFound(f"no chain {chain_type}/{chain}")  # never the server's folders
        return info

    def known_task(self, chain_type: str, chain: str, task: str) -> TaskInfo | None:
        """A task as last seen, without touching the disk unless it was never seen (for hot paths)."""
        info = self._chains.get((chain_type, chain))
        if info is None or info.resolve(task) is None:
            self.refresh()
            info = self._chains.get((chain_type, chain))
        return info.resolve(task) if info is not None else None

    def task(self, chain_type: str, chain: str, task: str) -> TaskInfo:
        """A task, its chain's file looked at first (one stat, no scan of the folder: a submission's hot path)."""
        self.refresh_chain(chain_type, chain)
        info = self._chain(chain_type, chain)
        if info.error:
            failure = "failed to import" if info.import_failed else "exposes no task"
            raise ChainNotFound(f"chain {info.ref} {failure}: {info.error}")
        found = info.resolve(task)
        if found is not None:
            return found
        hidden = next((h.reason for h in info.hidden if h.name == task), None)
        if hidden is not None:
            raise TaskNotFound(f"{task} is a luigi task of chain {info.ref} but is not exposed: {hidden}")
        known = ", ".join(info.tasks) or "none"
        raise TaskNotFound(f"no task {task} in chain {info.ref} (tasks: {known})")
