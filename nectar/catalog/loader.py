"""A chain file imported as the module ``chains.<type>.<chain>`` and described, or its import error named.

Modules are compiled from their source as it is now (no stale bytecode; a process keeps the code of the
content it last compiled, so a worker compiles a chain file once per change, for every attempt it forks
after: :func:`chain_code`; a file whose last change is settled is not read again while its stat is the same:
:func:`_source_of`); their exposed tasks are decided by
:mod:`nectar.exposure`, their upstream tasks by :mod:`nectar.upstream`; a module that fails to
import is described by its error, with where in the file.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.abc
import importlib.machinery
import inspect
import logging
import os
import select
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from stat import S_ISSOCK
from typing import Any, NamedTuple

from nectar.catalog.keepable import Keepable, keepable
from nectar.catalog.kept import kept, watch
from nectar.catalog.luigi_state import changed_imports, drop_changed_imports, forget_module
from nectar.catalog.luigi_state import executed_anew as luigi_state_anew
from nectar.catalog.model import ChainInfo, TaskInfo
from nectar.catalog.stamps import Stamp, stamp_of
from nectar.exposure import exposure
from nectar.forks import IMPORTS
from nectar.keys import is_name
from nectar.logs.module_handlers import executed_anew
from nectar.params import params_of
from nectar.schedules.declared import declared_on
from nectar.stdlib_internals import raw_set_handler
from nectar.task import chain_module
from nectar.triggers.declared import declared_triggers
from nectar.upstream import names_in_requires, upstream_of

logger = logging.getLogger(__name__)

#: a file's device, inode, size, mtime and ctime (in ns), as ``fstat`` told them just before its bytes were read
Seen = tuple[int, int, int, int, int]
#: seconds after a file's last change (its ctime) from which its stat vouches for its bytes: a later change gives it
#: another ctime (a write, a truncation, a rename, a ``utime`` all set it to the kernel's time then; no call sets it
#: back), unless it comes within the same tick of the file's timestamps: the kernel's coarse clock (a few ms), a
#: filesystem that keeps seconds or two (FAT), a clock stepped back a little. So a file that changed less than this
#: before it was read is compared byte for byte at each use, as every file was; one settled, by one ``stat``
SETTLED = 2.5


def _seen(stat: os.stat_result) -> Seen:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _source_of(path: Path) -> tuple[bytes, Seen | None, Stamp]:
    """The bytes of the file at ``path``, what its stat (taken before they were read) said of it if its last
    change was settled then (:data:`SETTLED`; None: only its bytes can tell whether it changed since), and its stamp
    by that stat (:mod:`nectar.catalog.stamps`: what an importer of the module these bytes make notes, settled or
    not). A change between that stat and the read, or after, gives it another stat: the bytes are read again then."""
    now = time.time_ns()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.fstat(fd)
        parts = [os.read(fd, stat.st_size + 1)]
        while parts[-1]:
            parts.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    settled = stat.st_ctime_ns < now - int(SETTLED * 1e9) and stat.st_mtime_ns < now - int(SETTLED * 1e9)
    return b"".join(parts), _seen(stat) if settled else None, stamp_of(stat)


def _unchanged(path: Path, seen: Seen | None) -> bool:
    """Whether the file at ``path`` is still the one whose settled stat was ``seen`` (one ``stat``; False when
    ``seen`` is None, or the file cannot be looked at)."""
    if seen is None:
        return False
    try:
        return _seen(os.stat(path)) == seen
    except OSError:
        return False


class Compiled(NamedTuple):
    """A chain file's source as this process last read it, what its stat said of it then and its stamp by that stat
    (:func:`_source_of`), its code, and what to check of the module it makes if a process may keep that module
    between runs (None: it may not; :func:`~nectar.catalog.keepable.keepable`)."""

    source: bytes
    seen: Seen | None
    stamp: Stamp
    code: types.CodeType
    keep: Keepable | None = None
    #: whether a class of it gives a parameter a default computed as the file is executed (:func:`defaults_anew`)
    anew: bool = False


#: by chain file: what this process last compiled (inherited by the processes it forks)
_COMPILED: dict[str, Compiled] = {}


def chain_code(path: Path, chain_type: str, chain: str) -> types.CodeType:
    """The code of the chain file ``<type>/<chain>.py`` at ``path`` as it is now: compiled again only when its
    bytes differ from those this process compiled last (nothing of it runs here); not read again while its settled
    stat is the same (:func:`_source_of`)."""
    if not (is_name(chain_type) and is_name(chain)):
        raise ValueError(f"refusing to import {path}: names must be [A-Za-z0-9_]")
    held = _COMPILED.get(str(path))
    if held is not None and _unchanged(path, held.seen):
        return held.code
    source, seen, stamp = _source_of(path)
    if held is not None and held.source == source:
        _COMPILED[str(path)] = held._replace(seen=seen, stamp=stamp)
        return held.code
    tree = ast.parse(source, str(path))  # parsed once, for the code and the rule
    code = compile(tree, str(path), "exec", dont_inherit=True)
    _COMPILED[str(path)] = Compiled(source, seen, stamp, code, keepable(tree), defaults_anew(tree))
    return code


def _literal(node: ast.expr) -> bool:
    """A number, string, bytes, None, True or False, negated or not, or a tuple, list, set or dict of them."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_literal(item) for item in node.elts)
    if isinstance(node, ast.Dict):
        return all(key is not None and _literal(key) for key in node.keys) and all(map(_literal, node.values))
    return isinstance(node, ast.Constant)


def defaults_anew(tree: ast.Module) -> bool:
    """Whether a class of the file gives a parameter a default its execution computes: an attribute made by a call of
    a ``...Parameter`` (``day = luigi.DateParameter(default=datetime.date.today())``) whose ``default`` (by keyword or
    first) is not a literal constant. ``python -m luigi`` executes the file for each command, so each run takes such
    a default as of its own moment; a process that keeps the module executes it again to make a task now
    (:meth:`~nectar.catalog.ChainCatalog.task_now`). A default named by a module constant counts: the rule does not
    follow names."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
            if not isinstance(value, ast.Call):
                continue
            callee = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
            if not callee.endswith("Parameter"):  # luigi's kinds and a chain's own, as they are named
                continue
            given = [keyword.value for keyword in value.keywords if keyword.arg == "default"] + value.args[:1]
            if not all(_literal(default) for default in given):
                return True
    return False


class _ChainsFolders(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: the package ``chains`` where no entry of ``sys.path`` holds one (a console script,
    whose first entry is its ``bin``; a worker started in another folder), a namespace package of the chains folders
    this process executed chain files of. What a chain's own imports (``from . import helpers``, ``from
    chains.<type> import helpers``) and luigi's ``load_task`` of a task a run yields (``__import__('chains.<type>.
    <chain>')``) import first then find it, as ``python -m luigi`` started in the folder holding the chains does; one
    that ``sys.path`` holds (the working folder, ``PYTHONPATH``: an ``__init__.py`` of the user's) is found first."""

    def __init__(self) -> None:
        #: the chains folders, the package's ``__path__`` (shared: a folder added later is searched by it too)
        self.folders: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "chains" or not self.folders:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = self.folders
        return spec

    def add(self, folder: str) -> None:
        if folder not in self.folders:
            self.folders.append(folder)
            parent, name = os.path.split(folder)
            if name == "chains" and parent not in sys.path:
                # last on the path too, for the processes a run spawns (a ``spawn`` or ``forkserver`` pool: a fresh
                # interpreter given this one's sys.path, not its finders) that unpickle ``chains.<type>.<chain>.f``
                sys.path.append(parent)
        if self not in sys.meta_path:
            sys.meta_path.append(self)


_CHAINS_FOLDERS = _ChainsFolders()


def load_chain_module(path: Path, chain_type: str, chain: str, code: types.CodeType | None = None) -> types.ModuleType:
    """Compile (see :func:`chain_code`) and execute a chain file as a fresh module ``chains.<type>.<chain>``; ``code``
    the file's code as its caller just had it from :func:`chain_code`, not asked for again. The file's stamp as its
    bytes were read is the module's (:func:`~nectar.catalog.luigi_state.executed_anew`): a chain file that imports
    it notes that one, not the file's stamp as its own execution ends (a fix saved meanwhile would be taken as
    executed), at no stat more."""
    if code is None:
        code = chain_code(path, chain_type, chain)
    name = chain_module(chain_type, chain)
    stamp = _COMPILED[str(path)].stamp  # of the bytes ``code`` was compiled from
    _CHAINS_FOLDERS.add(os.path.dirname(os.path.dirname(path)))
    drop_changed_imports(name, code)  # a helper module changed since: imported as it is now
    module = types.ModuleType(name)
    module.__file__ = str(path)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        # no fork copies a module lock of what it imports mid-import (nectar.forks); the log handlers the module's
        # last execution added taken off (nectar.logs.module_handlers), and what it set in luigi's state
        # (nectar.catalog.luigi_state)
        with IMPORTS.inside(), executed_anew(name), luigi_state_anew(name, code, file=str(path), stamp=stamp):
            exec(code, module.__dict__)
    except BaseException:
        forget_module(name)
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    return module


#: the chain module this process executed ahead of its one attempt (a spare, while it waited for its run): its file,
#: the source it ran (and what the file's stat said of it), the module
_AHEAD: tuple[str, Compiled, types.ModuleType] | None = None


class _TooLong(BaseException):
    """A chain file executed ahead took longer than it may (a BaseException: the chain's ``except Exception`` lets
    it through)."""


def load_ahead(
    path: Path, chain_type: str, chain: str, budget: float, rehearse: Callable[[types.ModuleType], Any] | None = None
) -> bool:
    """Execute the chain file now, for the one attempt this process will run later (a spare, while it waits for its
    run; :func:`fresh_chain_module` then takes it if the file has not changed), then ``rehearse(module)`` (what the
    attempt will do with it, so that what that touches is set up: its error is ignored); at most ``budget`` seconds.
    The module this process executed for its last run is taken again, not executed, if the file is unchanged and is
    one a process may keep, and every run since left it exactly as executed (:mod:`nectar.catalog.kept`).

    False if it failed or took longer (nothing is kept: the attempt executes the file itself, and names its error).
    The attempt's own records start when it has its run: what the chain logs as it is executed has no run id.
    """
    global _AHEAD

    def too_long(*_: Any) -> None:
        raise _TooLong

    previous = raw_set_handler(signal.SIGALRM, too_long)  # a spare's, each run: no enum made of either handler
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        code = chain_code(path, chain_type, chain)
        module = kept(str(path), code)
        if module is None or changed_imports(module.__name__):  # not kept if a module it imports changed since
            module = load_chain_module(path, chain_type, chain, code)
            # noted as executed, before the rehearsal runs any of its code (a task's __init__ may set what a fresh
            # execution would not hold) and before any run
            watch(module, str(path), code, _COMPILED[str(path)].keep)
        if rehearse is not None:
            try:
                rehearse(module)
            except Exception:  # the attempt does it again, and says why it fails
                pass
    except (Exception, _TooLong):
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        raw_set_handler(signal.SIGALRM, previous)
    _AHEAD = (str(path), _COMPILED[str(path)], module)
    return True


def fresh_chain_module(path: Path, chain_type: str, chain: str) -> types.ModuleType:
    """The chain file's module as the file is now: the one executed ahead (:func:`load_ahead`) if the file's bytes
    are still those it ran (its settled stat unchanged, or else its bytes read again: :func:`_source_of`), once; else
    executed now (:func:`load_chain_module`)."""
    global _AHEAD
    ahead, _AHEAD = _AHEAD, None
    name = ahead[2].__name__ if ahead is not None else ""
    if ahead is not None and ahead[0] == str(path) and sys.modules.get(name) is ahead[2] and not changed_imports(name):
        try:
            if _unchanged(path, ahead[1].seen) or path.read_bytes() == ahead[1].source:
                return ahead[2]
        except OSError:  # gone since: executing it says so
            pass
    return load_chain_module(path, chain_type, chain)


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


#: seconds a chain file may take to be executed ahead of its runs: by a spare (the file its run will likely need;
#: one that takes longer, or fails, is not executed ahead again until it changes), or by a worker's probe child
#: before the worker forks (:func:`finished_within`; one that takes longer is left to its runs)
AHEAD_BUDGET = 2.0
#: what a probe child writes for a chain file (:class:`Probe`): executed to its end within the budget (an import error
#: counts as ended), ended but later, or left by what ends a process (a ``KeyboardInterrupt`` raised at its top)
_ENDED, _SLOW, _RAISED = ord("."), ord("s"), ord("x")
#: what a probe says of a chain file not told yet (:class:`Probe`): being executed in a probe child
PROBING = "its file is being executed in a probe first"
#: what a probe says of a chain file whose execution ended the probe's process (``os._exit``, a crash)
ENDED = "ended the probe's process as it was imported"
#: what a probe says of a chain file that took longer than its budget (:class:`Probe`; not said by a patient one)
LATE = "took longer than {budget:g}s to import in a probe"


class Probe:
    """A child process forked here that executes chain files in order (:func:`inspect_chain`) and tells this process,
    for each, whether it ended within ``budget`` seconds: the one piece of code by which a process that forks (a
    worker, a clock beside it) executes a chain file only once it is known to end (a hung or half-made import there
    would hold up, or poison, every process it forks after). :meth:`poll` never waits longer than it is told, so such a
    process polls it between its passes. The child is ended at the first file that has taken longer than the budget
    since this process last saw it tell one (:attr:`verdicts` names that file; those after it are not told: a probe
    forked again goes on from there). Its output goes nowhere (what a chain prints as it is imported is printed once,
    by the process that keeps it), it dies with this process (PDEATHSIG SIGKILL) and ends without running this
    process's exit handlers.

    :attr:`verdicts`, by chain told: None if its file ended within the budget, else why it is not executed here.

    A ``patient`` probe (a process's later reads, which never wait for it) is not ended for the time a file takes: one
    that ends, however slowly (a chain importing a heavy library on a loaded machine), is told as ended, to be
    executed here (it ended there: it will here); one whose import never ends is never told, and its child waits
    until it is stopped (:meth:`stop`: its file changed) or this process ends.
    """

    def __init__(self, chains: list[tuple[tuple[str, str], Path]], budget: float, patient: bool = False) -> None:
        from nectar import lifeline  # in this process, before a fork (ctypes: not in every process that reads chains)

        self.chains = list(chains)
        self.budget = budget
        self.patient = patient
        self.verdicts: dict[tuple[str, str], str | None] = {}
        reader, writer = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:  # no child to be had (memory, a process limit): said by the caller
            os.close(reader)
            os.close(writer)
            raise
        if pid == 0:  # pragma: no cover - the child: its coverage is not collected
            lifeline.die_with_parent(parent, signal.SIGKILL)  # a worker stopped meanwhile leaves no probe behind
            os.close(reader)
            nowhere = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nowhere, 1)
            os.dup2(nowhere, 2)
            _close_sockets()
            try:
                for (chain_type, chain), path in self.chains:
                    began = time.monotonic()
                    try:
                        inspect_chain(path, chain_type, chain)  # an import error (a sys.exit too) is described: ended
                        ended = _ENDED if time.monotonic() - began <= budget else _SLOW
                    except BaseException:  # a KeyboardInterrupt at its top: it would end the process that executes it
                        ended = _RAISED
                    os.write(writer, bytes([ended]))
            finally:
                os._exit(0)
        os.close(writer)
        self.pid: int | None = pid
        self._reader = reader
        #: when this process last saw the child tell a file (or forked it): the file under way began before
        self._since = time.monotonic()

    @property
    def over(self) -> bool:
        """Whether the child has told what it will (it is ended, and waited for)."""
        return self.pid is None

    def watched(self) -> int:
        """A copy of this process's end of the child's pipe, readable once the child told a file or ended: a thread
        may wait on it (``select``) while another polls the probe or stops it (which closes the end :meth:`poll`
        reads). The caller closes it."""
        return os.dup(self._reader)

    def patience(self) -> float:
        """Seconds until the file under way has taken longer than the budget (as far as this process can tell)."""
        return max(0.0, self._since + self.budget - time.monotonic())

    def poll(self, wait: float = 0.0) -> None:
        """Take what the child told since, waiting for it at most ``wait`` seconds; end it once it told every file, or
        ended, or the file under way took longer than the budget."""
        pid = self.pid
        if pid is None:
            return
        told = self._read(wait)
        if told is None:  # its end of the pipe closed: it ended
            self._end(pid, ENDED)
            return
        if told:
            self._since = time.monotonic()
            self._told(told)
        if len(self.verdicts) == len(self.chains):
            self._end(pid, None)
        elif _ended(pid):  # ended, its pipe held open by a process forked meanwhile (a spare)
            self.pid = None
            self._told(self._read(0.0) or b"")
            self._end(None, ENDED)
        elif not self.patient and not self.patience():
            self._end(pid, LATE.format(budget=self.budget))

    def _read(self, wait: float) -> bytes | None:
        """The bytes the child wrote since (b"": none within ``wait``; None: none will come)."""
        if not select.select([self._reader], [], [], wait)[0]:
            return b""
        return os.read(self._reader, len(self.chains)) or None

    def _told(self, told: bytes) -> None:
        for ((chain_type, chain), path), ended in zip(self.chains[len(self.verdicts) :], told, strict=False):
            if ended == _ENDED or (ended == _SLOW and self.patient):
                self._verdict((chain_type, chain), path, None)
            elif ended == _SLOW:
                self._verdict((chain_type, chain), path, LATE.format(budget=self.budget))
            else:
                self._verdict((chain_type, chain), path, "raised what ends a process as it was imported in a probe")

    def _verdict(self, ref: tuple[str, str], path: Path, left: str | None) -> None:
        self.verdicts[ref] = left
        if left is not None:
            logger.warning("%s %s: not executed in this process for now (its runs execute it)", path, left)

    def _end(self, pid: int | None, left: str | None) -> None:
        """The child ended (and waited for, unless ``pid`` is None: it was), the file under way left as ``left``."""
        os.close(self._reader)
        self.pid = None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):  # waited for elsewhere (nothing here does)
                os.waitpid(pid, 0)
        if left is not None and len(self.verdicts) < len(self.chains):
            self._verdict(*self.chains[len(self.verdicts)], left)

    def stop(self) -> None:
        """End the child now (its file changed, or is gone): what it has not told is not told."""
        if self.pid is not None:
            self._end(self.pid, None)


def _close_sockets() -> None:
    """In a probe's child: the sockets it was forked with closed (an API worker's listening socket and its clients'
    connections: a child whose file never ends held a connection the worker closed open, its client never told)."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone by now
            if S_ISSOCK(os.fstat(int(name)).st_mode):
                os.close(int(name))


def _ended(pid: int) -> bool:
    """Whether the child ``pid`` ended (and is waited for now), without waiting for it."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:  # waited for elsewhere (nothing here does)
        return True


def finished_within(chains: list[tuple[tuple[str, str], Path]], budget: float) -> dict[tuple[str, str], str | None]:
    """What :class:`Probe` children say of ``chains`` (``((type, chain), file)``, in order), waited for: by chain, None
    if its file ended within ``budget`` seconds, else why it is not executed here; a probe forked again goes on after
    a file that did not end."""
    verdicts: dict[tuple[str, str], str | None] = {}
    todo = list(chains)
    while todo:
        probe = Probe(todo, budget)
        while not probe.over:
            probe.poll(probe.patience())
        verdicts.update(probe.verdicts)
        todo = todo[len(probe.verdicts) :]
    return verdicts


def inspect_chain(path: Path, chain_type: str, chain: str) -> ChainInfo:
    """Import one chain file and describe its tasks (or its import error)."""
    try:
        module = load_chain_module(path, chain_type, chain)
    except KeyboardInterrupt:  # Ctrl-C: it stops the process
        raise
    except BaseException as exc:  # any failure of user code (a sys.exit at its top too): listed, never fatal
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
    compiled = _COMPILED.get(str(path))
    schedules, errors, triggers, trigger_errors = [], [], [], []
    for info in tasks.values():
        declared, wrong = declared_on(info)
        schedules.extend(declared)
        errors.extend(wrong)
        watching, wrong = declared_triggers(info)
        triggers.extend(watching)
        trigger_errors.extend(wrong)
    return ChainInfo(
        chain_type,
        chain,
        path,
        tasks,
        error=found.error,
        hidden=found.hidden,
        schedules=tuple(schedules),
        schedule_errors=tuple(errors),
        triggers=tuple(triggers),
        trigger_errors=tuple(trigger_errors),
        anew=compiled is not None and compiled.anew,
    )
