"""What a chain module's execution sets in luigi's process-wide state, held to that execution as in a fresh process.

luigi keeps, for the process, what a module sets as it is imported: its event handlers (``@luigi.Task.event_handler``
at its top), its namespaces (``luigi.namespace(...)``), the options it sets in luigi's configuration
(``get_config().set(...)``). Under ``python -m luigi`` a process imports a chain file once; nectar executes one again
in a process that lives on (a reused attempt process, for each run whose chain module is not kept; the API's catalog,
at each change of the file), and what the last execution set stayed: each event handled once per execution, a
namespace the file no longer sets naming its tasks (and a global one another chain's), an option the file no longer
sets read by its runs. :func:`executed_anew` holds each to the execution under way:

- the event handlers of the module's last execution are dropped before it is executed again (or forgotten);
- the namespaces set for the module's own scope (its name, or a module under it) are dropped before, and those it set
  for any other scope (luigi's default, ``""``: every module) put back after, as they were: the module's classes take
  them, the next chain's do not;
- luigi's options that the module's executions changed in this process are put back as they were before the first
  such change, before it is executed again: what the file now sets is what the run reads, as in a fresh process
  (where a reused process read what the file set when the spare executed it ahead, before
  :func:`nectar.reuse.before_run` noted luigi's configuration for :func:`nectar.reuse.put_back` to put back). A
  module kept between runs (:mod:`nectar.catalog.kept`) is not executed again: what it set stays, as noted before its
  first run. Another chain module's options are left as they are: a chain file that imports it
  (``from chains.etl.sales_chain import ...``) reads them, as under luigi.

A chain module first imported by another's execution (``import chains.<type>.<chain>``, Python's own import) is
executed within :func:`executed_anew` of its own name too (:class:`_ChainImports`, first on ``sys.meta_path`` while a
chain module is executed): what it sets is its own, not its importer's. Counted as the importer's, its options were
put back before the importer's next execution, which found it in ``sys.modules`` and did not execute it again: the
importer's next run read none of them.

The environment variables a chain module's execution sets (``os.environ[...] = ...`` at its top, as a chain that
reads a ``.env`` file does), and the folders it puts on ``sys.path`` (as a chain reaching its helpers by a folder of
its own does), are held the same way: a process that executed several chain modules (a worker, before it
forks its attempts; a reused attempt process) runs each chain's runs with the variables as ``python -m luigi --module
<it>`` would have them: as they were before any chain module changed them, but for what the run's chain module and
the chain modules it imports set (:func:`held_to`; put back after the run with the rest of the environment and
``sys.path``, :func:`nectar.reuse.put_back`). A chain module executed again starts from the variables as they were
before its own last execution changed them, and without the folders it put on ``sys.path`` (a file that appends one
does not append it again at each change). The folders it takes off ``sys.path`` and the working directory it moves
to (``os.chdir`` at its top) are held alike (round 65): the folders are off for its runs and its importers' alone, put
back at their place for the others' and before it is executed again; its runs and its importers' start in its folder,
the others' in the process's own, which is given back as each outermost execution ends (a worker, the clock or the
API reads its own relative paths where it started, not where the last chain file it executed moved).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import types
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import luigi.configuration

from nectar import forks
from nectar.catalog.stamps import Stamp, file_stamp
from nectar.luigi_internals import (
    Handler,
    forget_event_handlers,
    forget_task_classes,
    hide_event_handlers,
    show_event_handlers,
    task_namespaces,
)
from nectar.stdlib_internals import environ_data, parsed, parsed_as, set_environ, set_parsed

#: luigi's configuration as :func:`~nectar.stdlib_internals.parsed` copies it: its ``DEFAULT`` options, each section's
Parsed = tuple[dict[str, str], dict[str, dict[str, str]]]
#: by chain module: each option of luigi's configuration (a section's, or ``DEFAULT``'s as section None) that its
#: executions changed in this process, as it was before the first such change (None: absent); inherited by the
#: processes it forks
_OPTIONS: dict[str, dict[tuple[str | None, str], str | None]] = {}
#: by chain module: each section of luigi's configuration that its executions made or removed in this process,
#: whether it was there before the first such change
_SECTIONS: dict[str, dict[str, bool]] = {}
#: by chain module: each option its last execution changed, as that execution left it (None: removed), and each
#: section it made (True) or removed (False): what :func:`held_to` gives a run of a chain that imports it
_SET: dict[str, tuple[dict[tuple[str | None, str], str | None], dict[str, bool]]] = {}
#: the event handlers :func:`held_to` took off luigi for the run under way, for :func:`given_back`
_HIDDEN: list[Handler] = []
#: by chain module executed in this process: the chain modules its code imports (:func:`chain_imports`; none where
#: its code was not known), as of its last execution
_IMPORTS_OF: dict[str, frozenset[str]] = {}
#: by chain module executed in this process (a chain file, or a module of the chains folder one imports): each module
#: its code names (:data:`_IMPORTS_OF`) that ``sys.modules`` held as its last execution ended, with that module's file
#: and the file's stamp then (:func:`changed_imports`); none where it imports none. Keyed by :func:`_keyed`: a module
#: imported by a plain name by its name and file
_IMPORTED: dict[str, dict[str, tuple[str, Stamp | None]]] = {}
#: by module of the chains folder executed in this process, as ``sys.modules`` holds it: its file and the file's stamp
#: as its execution began (Python's import, :class:`_ChainImports`: one stat then) or as its bytes were read (a chain
#: file the catalog or an attempt executed: :func:`nectar.catalog.loader.load_chain_module`, no stat); what an
#: importer notes of it, and judged by it where an importer names it for the first time (:func:`changed_imports`).
#: Keyed by :func:`_keyed`, as :data:`_IMPORTED`
_STAMPED: dict[str, tuple[str, Stamp | None]] = {}
#: ``os.environ``'s own dictionary (bytes to bytes: :func:`~nectar.stdlib_internals.environ_data`)
_ENVIRON = environ_data()
#: each environment variable a chain module's execution changed in this process, as it was before the first such
#: change by any (None: unset); inherited by the processes it forks
_ENV_ORIGINAL: dict[bytes, bytes | None] = {}
#: by chain module: each environment variable its last execution changed, as that execution left it (None: unset)
_ENV_SET: dict[str, dict[bytes, bytes | None]] = {}
#: by chain module: the folders its last execution put on ``sys.path`` (not there before it)
_PATH_ADDED: dict[str, tuple[str, ...]] = {}
#: by chain module: the folders its last execution took off ``sys.path``, each with its place there before
_PATH_REMOVED: dict[str, tuple[tuple[int, str], ...]] = {}
#: the working directory before the first chain module's execution that moved it (empty: none has); the process's
#: own, given back as each outermost execution ends; inherited by the processes it forks
_CWD_ORIGINAL: list[str] = []
#: by chain module: the working directory its last execution moved to (``os.chdir`` at its top), absolute
_CWD_SET: dict[str, str] = {}


class _Executing(threading.local):
    """This thread's chain module executions under way: luigi's configuration as it was before each (the outermost
    first). A chain module executed within another's (:class:`_ChainImports`) changes those before it as it ends
    (:func:`_absorbed`)."""

    def __init__(self) -> None:
        self.before: list[Parsed] = []
        #: the environment as it was before each (:data:`_ENVIRON`'s copy)
        self.environ: list[dict[bytes, bytes]] = []
        #: ``sys.path`` as it was before each
        self.path: list[list[str]] = []
        #: the working directory as it was before each
        self.cwd: list[str] = []
        #: the name of each
        self.names: list[str] = []
        #: each one's hold of :data:`_CWD_LOCK` taken at a move its code does not name (a library's function called at
        #: its top, :func:`_moved_under_lock`): the outermost's, the working directory as it was when taken; else None
        self.late: list[str | None] = []


_EXECUTING = _Executing()
#: held by each outermost chain module execution and by :func:`asked_in_run_folder`: one thread at a time moves the
#: process's working directory and gives it back; made anew in every child forked from this process
_CWD_LOCK = threading.RLock()
os.register_at_fork(after_in_child=lambda: globals().__setitem__("_CWD_LOCK", threading.RLock()))
#: how many chain module executions are under way in this process, in any thread: :data:`_IMPORTS` is first on
#: ``sys.meta_path`` while any is (:func:`_imports_watched`)
_WATCHING = [0]
_WATCHING_LOCK = forks.lock_made_anew_in_children(globals(), "_WATCHING_LOCK")
#: the names of chain modules: ``chains.<type>.<chain>`` (:func:`nectar.task.chain_module`)
_CHAINS = "chains."
#: each chains folder a chain file of this process was executed from, with a separator at its end: a module whose file
#: is in one, imported by a plain name from a folder a chain file puts on ``sys.path``, is a module of the chains folder
_FOLDERS: dict[str, None] = {}
#: the modules of the chains folder this process executed that were imported by a plain name (not ``chains.``)
_PLAIN: set[str] = set()


def forget_module(name: str) -> None:
    """Forget what luigi holds of the chain module ``name``'s last execution: its task classes, its event handlers,
    the namespaces set for its scope."""
    forget_task_classes(name)
    forget_event_handlers(name)
    namespaces = task_namespaces()
    for scope in [scope for scope in namespaces if _own(scope, name)]:
        namespaces.pop(scope, None)


@contextlib.contextmanager
def executed_anew(
    name: str,
    code: types.CodeType | None = None,
    package: str | None = None,
    file: str | None = None,
    stamp: Stamp | None = None,
) -> Iterator[None]:
    """The chain module ``name`` executed in the block, anew (its ``code``, where known: the modules of the chains
    folder it imports noted, :func:`chain_imports`, relative ones from ``package``, by default the package ``name`` is
    in; its ``file``, where known: its ``stamp`` as its code was read, else one stat now, noted, :data:`_STAMPED`, put
    back as it was if the block raises: the module in ``sys.modules`` is then the one before): what luigi holds of its
    last execution forgotten (:func:`forget_module`) and the options its executions changed put back
    (:func:`_put_back_options`) before; the namespaces it set for other modules' scopes put back after, and the
    options it changed noted."""
    moving = code is None or name in _CWD_SET or _names_a_move(code)
    with _CWD_LOCK if moving else _UNHELD:  # one execution (or ask) at a time moves the working directory
        _MOVING[0] += moving  # an ask made meanwhile waits for its end (:func:`run_folder`), its first move unnoted
        if package is None:
            package = name.rpartition(".")[0]
        _IMPORTS_OF[name] = chain_imports(code, package) if code is not None else frozenset()
        key = _keyed(name, file)
        was = _STAMPED.pop(key, None)
        if file is not None:
            _STAMPED[key] = (file, stamp if stamp is not None else file_stamp(file))
            if name.count(".") == 2 and name.startswith(_CHAINS):  # a chain file: chains/<type>/<chain>.py
                _FOLDERS.setdefault(os.path.join(os.path.dirname(os.path.dirname(file)), ""))
                for plain in _PLAIN:  # a helper by a plain name is found anew where this chain's sys.path finds it:
                    sys.modules.pop(plain, None)  # another chain's of the same name was not its (review22)
        forget_module(name)
        config = luigi.configuration.get_config()
        _put_back_options(config, name)
        _SET.pop(name, None)
        set_environ({variable: _ENV_ORIGINAL[variable] for variable in _ENV_SET.pop(name, ())})
        added = _PATH_ADDED.pop(name, ())
        if added:
            sys.path[:] = [folder for folder in sys.path if folder not in added]
        _put_on_path(_PATH_REMOVED.pop(name, ()))
        if _CWD_SET.pop(name, None) is not None:  # as before any chain module moved it
            os.chdir(_CWD_ORIGINAL[0])
        namespaces = task_namespaces()
        others = {scope: namespace for scope, namespace in namespaces.items() if not _own(scope, name)}
        before = parsed(config)
        executing, environs, paths, cwds = _EXECUTING.before, _EXECUTING.environ, _EXECUTING.path, _EXECUTING.cwd
        executing.append(before)
        _EXECUTING.names.append(name)
        environs.append(dict(_ENVIRON))
        paths.append(list(sys.path))
        start = os.getcwd() if moving else _settled_cwd()  # read while no other thread's ask holds it moved
        settled = start is not None
        if start is None:
            start = os.getcwd()
        outermost = not cwds
        cwds.append(start)
        late = _EXECUTING.late
        late.append(None)
        _imports_watched(1)
        try:
            yield
        except BaseException:
            if was is not None:
                _STAMPED[key] = was
            else:
                _STAMPED.pop(key, None)
            raise
        finally:
            executing.pop()
            _EXECUTING.names.pop()
            _imports_noted(name, key)
            _environ_noted(name, environs.pop(), environs)
            _path_noted(name, paths.pop(), paths)
            before_cwd = cwds.pop()
            took = late.pop()
            if took is not None:  # a move by code this file's does not name took the lock: the folder as it was then
                before_cwd = start = took
                settled = True
            if settled and (moving or took is not None or _CWD_LOCK.acquire(blocking=False)):  # else another thread's
                # ask holds it (and no move was made: :func:`_moved_under_lock`)
                try:
                    _cwd_noted(name, before_cwd, cwds)
                    if outermost and os.getcwd() != start:  # the process's own given back: a worker, the clock or the
                        # API reads its relative paths where it was, not where the chain file moved (held_to: a run's)
                        os.chdir(start)
                finally:
                    if not moving:
                        _CWD_LOCK.release()
            _imports_watched(-1)
            _MOVING[0] = max(0, _MOVING[0] - (moving or took is not None))  # a child forked within it: 0 (below)
            for scope in [scope for scope in namespaces if not _own(scope, name) and scope not in others]:
                del namespaces[scope]
            namespaces.update(others)
            if not parsed_as(config, before):  # compared in place, copied only if changed
                after = parsed(config)
                _note_changed(name, before, after)
                _SET[name] = _set_by(before, after)
                for outer in executing:  # an importer's execution under way: what this one set is not the importer's
                    _absorbed(outer, before, after)


#: how many executions that may move the working directory are under way (each holding :data:`_CWD_LOCK`): an ask
#: made while the first of them moves it, before any move is noted (:data:`_CWD_SET`), waits for its end
_MOVING = [0]
os.register_at_fork(after_in_child=lambda: _MOVING.__setitem__(0, 0))
#: the context of an execution that takes no lock (:func:`executed_anew`)
_UNHELD = contextlib.nullcontext()
#: the names by which code moves the working directory (``os.chdir``, ``from os import chdir``, ``os.fchdir``,
#: ``contextlib.chdir``)
_MOVES = frozenset({"chdir", "fchdir"})


def _names_a_move(code: types.CodeType) -> bool:
    """Whether ``code``, or a function or class defined in it, names :data:`_MOVES`: a module whose execution may move
    the working directory, which :func:`executed_anew` executes under :data:`_CWD_LOCK`. Any other (most chain files)
    is executed with no lock: a chain file saved, or first executed, while another thread's ask of a moved chain holds
    the lock (a slow ``complete()``) does not wait for it."""
    todo = [code]
    while todo:
        held = todo.pop()
        if not _MOVES.isdisjoint(held.co_names):
            return True
        todo.extend(const for const in held.co_consts if isinstance(const, types.CodeType))
    return False


def _moved_under_lock(real: Any) -> Any:
    """``os.chdir`` (or ``os.fchdir``) as the process calls it: a move made within a chain module's execution that took
    no lock (its code names no ``chdir``: a library's function called at its top moves the folder) waits for
    :data:`_CWD_LOCK` first (another thread's ask, in its own chain's folder, ends and gives the process's back), and
    holds it until the outermost execution ends and gives the folder back, as one that names it does (review23: the
    move landed under that ask, whose ``complete()`` read its relative path in the moved folder). Anything else, one
    look at a thread's list."""

    @functools.wraps(real)
    def move(path: Any) -> None:
        late = _EXECUTING.late
        if late and late[0] is None and not _CWD_LOCK._is_owned():  # type: ignore[attr-defined]
            _CWD_LOCK.acquire()
            _MOVING[0] += 1  # an ask with no lock (a chain that did not move) waits for the execution's end
            late[0] = os.getcwd()
        real(path)

    return move


os.chdir = _moved_under_lock(os.chdir)
os.fchdir = _moved_under_lock(os.fchdir)


def _settled_cwd() -> str | None:
    """The working directory, read holding :data:`_CWD_LOCK` (no other thread's ask has it moved); None where another
    thread holds the lock: taken and let go at once, never waited for."""
    if not _CWD_LOCK.acquire(blocking=False):
        return None
    try:
        return os.getcwd()
    finally:
        _CWD_LOCK.release()


def held_to(name: str) -> None:
    """luigi's event handlers and options as ``python -m luigi --module <name>`` has them, for a run of the chain
    module ``name`` in a process that executed other chain modules before (a reused attempt process): what another
    chain module's execution set (its handlers, its options) taken off for the run, unless ``name`` imports it (its
    code names it, or a chain module's it imports: :func:`chain_imports`); what each chain module it imports (and
    itself) set put in again, as its last execution left it (an imported module found in ``sys.modules`` is not
    executed again: its options put back after an earlier run are its own still). The environment variables, the
    folders on ``sys.path`` (those the chain modules put on it and took off) and the working directory alike. The
    handlers come back at the run's end (:func:`given_back`); the rest with the process's state
    (:func:`nectar.reuse.put_back`).
    """
    scope = _scope(name)
    foreign = _IMPORTS_OF.keys() - scope  # the chain modules this process executed that the run's does not import
    if _ENV_ORIGINAL:  # as before any chain module changed them, then as the run's chain modules set them
        held = dict(_ENV_ORIGINAL)
        for module in scope:
            held.update(_ENV_SET.get(module, ()))
        set_environ(held)
    if _PATH_ADDED:  # the folders other chain modules put on sys.path taken off, the run's own kept
        kept = {folder for module in scope for folder in _PATH_ADDED.get(module, ())}
        gone = {folder for module in foreign for folder in _PATH_ADDED.get(module, ()) if folder not in kept}
        if gone:
            sys.path[:] = [folder for folder in sys.path if folder not in gone]
    if _PATH_REMOVED:  # the folders other chain modules took off sys.path put back, the run's own taken off
        off = {folder for module in scope for _, folder in _PATH_REMOVED.get(module, ())}
        _put_on_path([placed for module in foreign for placed in _PATH_REMOVED.get(module, ()) if placed[1] not in off])
        if off:
            sys.path[:] = [folder for folder in sys.path if folder not in off]
    if _CWD_ORIGINAL:  # where the run's chain modules moved (the run's own first), else the process's own
        cwd = _moved_to(name, scope) or _CWD_ORIGINAL[0]
        if os.getcwd() != cwd:
            os.chdir(cwd)  # a folder removed since: the run's error (FileNotFoundError, naming it)
    if foreign:
        _HIDDEN.extend(hide_event_handlers(foreign))
    others = [module for module in _OPTIONS if module in foreign]
    own = [module for module in scope if module in _SET]
    if not others and not own:
        return
    config = luigi.configuration.get_config()
    defaults, sections = parsed(config)
    for module in others:  # as they were before its first change
        _apply(defaults, sections, _OPTIONS[module], _SECTIONS[module])
    for module in own:
        _apply(defaults, sections, *_SET[module])
    if not parsed_as(config, (defaults, sections)):
        set_parsed(config, defaults, sections)


def _scope(name: str) -> set[str]:
    """The chain module ``name`` and each chain module it imports (:data:`_IMPORTS_OF`), at any depth."""
    scope, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module not in scope:
            scope.add(module)
            todo.extend(_IMPORTS_OF.get(module, ()))
    return scope


def _moved_to(name: str, scope: Iterable[str]) -> str | None:
    """The working directory a run of the chain module ``name`` starts in where an execution of a chain module of its
    ``scope`` (:func:`_scope`) moved it: its own, else the first by name of those it imports; None: none moved it."""
    return _CWD_SET.get(name) or next((_CWD_SET[module] for module in sorted(scope) if module in _CWD_SET), None)


def asked_in_run_folder(name: str) -> contextlib.AbstractContextManager[None]:
    """The block (a task's own ``complete()``, a target's own ``exists()``, asked by the API, the clock, ``nectar
    status``: :mod:`nectar.catalog.asked`, which asks luigi's code with no lock) in the
    working directory a run of the chain module ``name`` has (:func:`held_to`): where a chain module's execution moved
    it (``os.chdir`` at its top), as ``python -m luigi`` started there asks them, a relative ``LocalTarget`` being the
    run's folder's; the process's own given back after. The working directory is the process's: it is moved under
    :data:`_CWD_LOCK`, which each execution holds too (it notes the process's own and gives it back), and which the
    ask of a chain that did not move holds as well where another did (asked in the process's own folder, not in the
    one another thread's ask moved to meanwhile). Nothing where no chain module's execution moved it (one look at a
    dictionary, and a context that does nothing: ~0.2 µs, where a generator's context took ~2.4 µs)."""
    if not _CWD_SET and not _MOVING[0]:
        return _IN_PLACE
    return _asked_in(None, name)  # the folder known under the lock: after an execution that may move it


#: :func:`asked_in_run_folder`'s context where no chain module moved the working directory (reentrant: it holds nothing)
_IN_PLACE = contextlib.nullcontext()


def run_folder(name: str) -> tuple[str, bool] | None:
    """The working directory a run of the chain module ``name`` has (:func:`held_to`) where a chain module's
    execution moved the process's, and whether it is one a chain module moved to (``name`` or one it imports: True)
    or the process's own (as it was before the first move, whichever thread's ask moved it meanwhile: False); None
    where none moved (the process's is the run's)."""
    if not _CWD_SET and _MOVING[0]:  # a chain file that may move the folder is being executed (its first move may be
        # under way, not noted yet): its end is waited for
        with _CWD_LOCK:
            pass
    if not _CWD_SET:
        return None
    moved = _moved_to(name, _scope(name))
    return (moved, True) if moved is not None else (_CWD_ORIGINAL[0], False)


def asked_in_folder(folder: str) -> contextlib.AbstractContextManager[None]:
    """The block in ``folder`` (a folder :func:`run_folder` names as one a chain module moved to), under
    :data:`_CWD_LOCK`, the process's own given back after (:func:`asked_in_run_folder`)."""
    return _asked_in(folder)


@contextlib.contextmanager
def _asked_in(folder: str | None, name: str | None = None) -> Iterator[None]:
    """The block in ``folder`` (None: the process's own; where ``name`` is given, the folder a run of that chain
    module has, known once the lock is held), under :data:`_CWD_LOCK` (:func:`asked_in_run_folder`)."""
    with _CWD_LOCK:
        if name is not None:
            folder = _moved_to(name, _scope(name))
        if folder is None:
            yield
            return
        start = os.getcwd()
        os.chdir(folder)  # a folder removed since: the ask's error (FileNotFoundError, naming it), as a run's
        try:
            yield
        finally:
            os.chdir(start)


def _environ_noted(name: str, before: dict[bytes, bytes], outer: list[dict[bytes, bytes]]) -> None:
    """Note the environment variables the execution of the chain module ``name`` changed from ``before``: as they
    were before any chain module's change (:data:`_ENV_ORIGINAL`), and as it left them (:data:`_ENV_SET`); made in
    each execution under way around it (``outer``: an importer's) as if there before, so not counted its too."""
    if _ENVIRON == before:
        return
    changed = {
        variable: _ENVIRON.get(variable)
        for variable in before.keys() | _ENVIRON.keys()
        if before.get(variable) != _ENVIRON.get(variable)
    }
    for variable in changed:
        _ENV_ORIGINAL.setdefault(variable, before.get(variable))
    _ENV_SET[name] = changed
    for environ in outer:
        for variable, value in changed.items():
            if value is None:
                environ.pop(variable, None)
            else:
                environ[variable] = value


def _path_noted(name: str, before: list[str], outer: list[list[str]]) -> None:
    """Note the folders the execution of the chain module ``name`` put on ``sys.path`` (not in ``before``); put in
    each ``sys.path`` noted before an execution under way around it (``outer``: an importer's), so not counted its."""
    if sys.path == before:
        return
    was, now = set(before), set(sys.path)
    added = tuple(folder for folder in sys.path if folder not in was)
    if added:
        _PATH_ADDED[name] = added
        for path in outer:
            path.extend(added)
    removed = tuple((index, folder) for index, folder in enumerate(before) if folder not in now)
    if removed:
        _PATH_REMOVED[name] = removed
        gone = {folder for _, folder in removed}
        for path in outer:
            path[:] = [folder for folder in path if folder not in gone]


def _put_on_path(placed: Iterable[tuple[int, str]]) -> None:
    """Each folder of ``placed`` that is not on ``sys.path`` put back at its place there (its index before)."""
    for index, folder in sorted(placed):
        if folder not in sys.path:
            sys.path.insert(index, folder)


def _cwd_noted(name: str, before: str, outer: list[str]) -> None:
    """Note the working directory the execution of the chain module ``name`` moved to from ``before``
    (:data:`_CWD_SET`), and where it was before any chain module moved it (:data:`_CWD_ORIGINAL`); noted in each
    execution under way around it (``outer``: an importer's) as if there before, so not counted its too."""
    now = os.getcwd()
    if now != before:
        if not _CWD_ORIGINAL:
            _CWD_ORIGINAL.append(before)
        _CWD_SET[name] = now
        outer[:] = [now] * len(outer)


def given_back() -> None:
    """The event handlers :func:`held_to` took off for the run that ended given back to luigi."""
    if _HIDDEN:
        show_event_handlers(_HIDDEN)
        _HIDDEN.clear()


def chain_imports(code: types.CodeType, package: str = "") -> frozenset[str]:
    """The modules of the chains folder a module's ``code`` imports (at its top or in a function): each name under
    ``chains.<type>.`` its code objects name (``import chains.<type>.<chain>``, ``from chains.<type>.sub.mod import
    ...``) and the packages on its way (``chains.<type>.sub``); each module of a package of the chains folder it
    names beside a name it imports from it (``from chains.<type> import <chain>``, ``from chains.<type>.sub import
    mod``); and, the module in the chains folder's ``package`` (``chains.<type>``, or deeper), each such module a
    relative import would name (``from .helpers import ...``, ``from . import helpers``, ``from .sub.mod import ...``;
    the code does not say an import's level: each name it holds is taken as one, and only a module ``sys.modules``
    holds is ever judged). A module imported by a name made at run time is not seen."""
    found: set[str] = set()
    prefix = f"{package}." if package.startswith(_CHAINS) else ""  # a module in the chains folder: relative names
    todo = [code]
    while todo:
        held = todo.pop()
        names = held.co_names
        if _PLAIN:  # a module of the chains folder imported by a plain name, executed before (its first import is
            # noted as it is executed: :meth:`_ExecutedAnew.exec_module`)
            found.update(_PLAIN.intersection(names))
        if prefix:
            found.update([prefix + named for named in names if named and "." not in named])
        for named in names:
            if "." not in named:
                continue
            if named.startswith(_CHAINS):
                _with_packages(named, found)
                found.update([f"{named}.{other}" for other in names if "." not in other])
            elif prefix:
                _with_packages(prefix + named, found)
        todo.extend(const for const in held.co_consts if isinstance(const, types.CodeType))
    return frozenset(found)


def _in_packages(imports: frozenset[str]) -> frozenset[str]:
    """The modules ``sys.modules`` holds of each package of ``imports`` it holds, whose last name is one of
    ``imports`` (a relative import's: ``from .sub import mod`` names ``sub`` and ``mod``, ``chains.<type>.mod`` among
    ``imports`` for it), not in ``imports``."""
    held = [module for module in imports if hasattr(sys.modules.get(module), "__path__")]
    if not held:
        return frozenset()
    last = {module.rpartition(".")[2] for module in imports}
    return (
        frozenset(f"{package}.{child}" for package in held for child in last if f"{package}.{child}" in sys.modules)
        - imports
    )


def _with_packages(module: str, found: set[str]) -> None:
    """``module`` and each package on its way, from ``chains.<type>.<name>`` down, added to ``found``."""
    parts = module.split(".")
    found.update(".".join(parts[:end]) for end in range(3, len(parts) + 1))


def _in_chains_folder(module: str) -> bool:
    """Whether ``module`` is a module of a chain type's folder, at any depth (``chains.<type>.<name>...``)."""
    return module.startswith(_CHAINS) and module.count(".") >= 2


def _set_by(before: Parsed, after: Parsed) -> tuple[dict[tuple[str | None, str], str | None], dict[str, bool]]:
    """What an execution that took luigi's configuration from ``before`` to ``after`` set: each option it changed,
    as it left it (None: removed), and each section it made (True) or removed (False)."""
    options: dict[tuple[str | None, str], str | None] = {}
    made = {section: section in after[1] for section in before[1].keys() ^ after[1].keys()}
    compared: list[tuple[str | None, dict[str, str], dict[str, str]]] = [(None, before[0], after[0])]
    compared.extend((section, before[1].get(section, {}), now) for section, now in after[1].items())
    compared.extend((section, was, {}) for section, was in before[1].items() if section not in after[1])
    for where, was, now in compared:
        for option in was.keys() | now.keys():
            if was.get(option) != now.get(option):
                options[(where, option)] = now.get(option)
    return options, made


def _apply(
    defaults: dict[str, str],
    sections: dict[str, dict[str, str]],
    options: dict[tuple[str | None, str], str | None],
    made: dict[str, bool],
) -> None:
    """Set in the parsed configuration (``defaults``, ``sections``) each section of ``made`` there (True) or not
    (False), then each option of ``options`` to its value (None: removed)."""
    for section, there in made.items():
        if there:
            sections.setdefault(section, {})
        else:
            sections.pop(section, None)
    for (where, option), value in options.items():
        held = defaults if where is None else sections.get(where)
        if held is None:  # in a section gone
            continue
        if value is None:
            held.pop(option, None)
        else:
            held[option] = value


def _own(scope: str, name: str) -> bool:
    """Whether a namespace's ``scope`` is the module ``name``'s own (its name, or a module's under it)."""
    return scope == name or scope.startswith(f"{name}.")


def _note_changed(name: str, before: Parsed, after: Parsed) -> None:
    """Note, as they were before the first change, the options and sections the module ``name``'s execution
    changed."""
    options, made = _OPTIONS.setdefault(name, {}), _SECTIONS.setdefault(name, {})
    compared: list[tuple[str | None, dict[str, str], dict[str, str]]] = [(None, before[0], after[0])]
    for section in before[1].keys() | after[1].keys():
        if (section in before[1]) != (section in after[1]):
            made.setdefault(section, section in before[1])
        compared.append((section, before[1].get(section, {}), after[1].get(section, {})))
    for where, was, now in compared:
        for option in was.keys() | now.keys():
            if was.get(option) != now.get(option):
                options.setdefault((where, option), was.get(option))


def _put_back_options(config: luigi.configuration.LuigiConfigParser, name: str) -> None:
    """luigi's options and sections that the module ``name``'s executions changed in this process, as they were
    before (:data:`_OPTIONS`, :data:`_SECTIONS`), made luigi's in one step (:func:`~nectar.stdlib_internals.set_parsed`)
    if any differs."""
    if name not in _OPTIONS:
        return
    defaults, sections = parsed(config)
    _apply(defaults, sections, _OPTIONS[name], _SECTIONS[name])  # a section the module made goes with its options
    if not parsed_as(config, (defaults, sections)):  # compared in place: no second copy
        set_parsed(config, defaults, sections)


def _absorbed(outer: Parsed, before: Parsed, after: Parsed) -> None:
    """The configuration ``outer`` (as it was before an execution under way) with the changes of the execution that
    went from ``before`` to ``after`` made in it, as if they had been there before (a section the outer execution
    made since holds what the inner one set in it as the outer's)."""
    for section in before[1].keys() - after[1].keys():
        outer[1].pop(section, None)
    compared: list[tuple[dict[str, str] | None, dict[str, str], dict[str, str]]] = [(outer[0], before[0], after[0])]
    for section, now in after[1].items():
        was = before[1].get(section)
        held = outer[1].setdefault(section, {}) if was is None else outer[1].get(section)
        compared.append((held, was or {}, now))
    for held, was, now in compared:
        if held is None:
            continue
        for option in was.keys() | now.keys():
            if option not in now:
                held.pop(option, None)
            elif was.get(option) != now[option]:
                held[option] = now[option]


class _ChainImports(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` while a chain module is executed (:func:`executed_anew`): a module of the chains
    folder that its code imports (``chains.<type>.<chain>``, or deeper: ``chains.<type>.sub``,
    ``chains.<type>.sub.mod``; not in ``sys.modules``), found where Python's own finder finds it, is executed within
    :func:`executed_anew` of its own name; so is one imported by a plain name whose file is in a chains folder
    (``sys.path.insert(0, <a folder of the chain's>)``, then ``import helper``: :meth:`_plain`), noted as its
    importer's (:data:`_PLAIN`), so that a change saved to it is seen (:func:`changed_imports`) as one to a module
    named ``chains.<type>...`` is."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _in_chains_folder(fullname):
            return self._plain(fullname, path, target)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None and not isinstance(spec.loader, _ExecutedAnew):
            spec.loader = _ExecutedAnew(spec.loader)
        return spec

    def _plain(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None
    ) -> importlib.machinery.ModuleSpec | None:
        """A module imported by a plain name (``import helper``, ``import helpers.sub``) whose file Python's own
        finder finds in a chains folder (:data:`_FOLDERS`: from a folder of it a chain file put on ``sys.path``),
        executed within :func:`executed_anew`; None for any other (looked for only where ``sys.path``, or the
        package's path, holds a folder of a chains folder)."""
        if fullname.startswith("chains") or not _FOLDERS:
            return None
        folders = tuple(_FOLDERS)
        searched = sys.path if path is None else path
        if not any(isinstance(entry, str) and entry.startswith(folders) for entry in searched):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not spec.has_location or not str(spec.origin).startswith(folders):
            return None
        if not isinstance(spec.loader, _ExecutedAnew):
            spec.loader = _ExecutedAnew(spec.loader)
        return spec


class _ExecutedAnew(importlib.abc.Loader):
    """A chain module's loader (``loader``), its execution within :func:`executed_anew`; the rest of it ``loader``'s
    (its source for a traceback's lines)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        get_code = getattr(self.loader, "get_code", None)  # the code the loader executes: read from its cache
        code = get_code(module.__name__) if get_code is not None else None
        spec = module.__spec__
        file = spec.origin if spec is not None and spec.has_location else None
        package = module.__package__ or module.__name__.rpartition(".")[0]
        with executed_anew(module.__name__, code, package, file):
            self.loader.exec_module(module)
        names = _EXECUTING.names
        if not module.__name__.startswith(_CHAINS):  # imported by a plain name: its importer's code does not say it
            # is a module of the chains folder (:func:`chain_imports`) until it is executed once
            _PLAIN.add(module.__name__)
            if names:
                _IMPORTS_OF[names[-1]] = _IMPORTS_OF.get(names[-1], frozenset()) | {module.__name__}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


_IMPORTS = _ChainImports()


def _imports_watched(change: int) -> None:
    """One chain module execution more (``change`` 1) or fewer (-1) under way: :data:`_IMPORTS` put first on
    ``sys.meta_path`` as the first begins, taken off as the last ends."""
    with _WATCHING_LOCK:
        _WATCHING[0] += change
        if _WATCHING[0] == 0 and _IMPORTS in sys.meta_path:
            sys.meta_path.remove(_IMPORTS)
        elif _WATCHING[0] > 0 and _IMPORTS not in sys.meta_path:
            sys.meta_path.insert(0, _IMPORTS)


def _keyed(name: str, file: str | None) -> str:
    """What :data:`_STAMPED` and :data:`_IMPORTED` note the module ``name`` of the chains folder by: its name where it
    is ``chains.<type>...`` (one file a name) or its file is not known; else (imported by a plain name from a folder a
    chain file puts on ``sys.path``) its name and its file: two types' ``utils.py`` are two modules, each with its own
    stamp and its own imports (they shared one, and a save to one type's was judged by the other's)."""
    return name if file is None or name.startswith(_CHAINS) else f"{name} {file}"


def _key_held(module: str) -> str:
    """:func:`_keyed` of ``module`` as ``sys.modules`` holds it (its file, where it has one)."""
    file = getattr(sys.modules.get(module), "__file__", None)
    return _keyed(module, file if isinstance(file, str) else None)


def _imports_noted(name: str, key: str) -> None:
    """The modules of the chains folder the chain module ``name`` imports, as its execution leaves them: their files'
    stamps noted (:data:`_IMPORTED`): as it was executed (:data:`_STAMPED`, taken as its execution began or its bytes
    were read: a file saved while it or its importer was executed is seen as changed), else one stat; nothing
    where it imports none. A module of a package it imports that its code names (``from .sub import mod``) is one it
    imports (:func:`_in_packages`). Noted by ``key`` (:func:`_keyed`)."""
    imports = _IMPORTS_OF.get(name, frozenset())
    deeper = _in_packages(imports)
    if deeper:
        imports = _IMPORTS_OF[name] = imports | deeper
    noted = {}
    for module in imports:
        file = getattr(sys.modules.get(module), "__file__", None)
        if module != name and isinstance(file, str):
            stamped = _STAMPED.get(_keyed(module, file))
            noted[module] = stamped if stamped is not None and stamped[0] == file else (file, file_stamp(file))
    if noted:
        _IMPORTED[key] = noted
    else:
        _IMPORTED.pop(key, None)


def _as_executed(module: str) -> tuple[str, Stamp | None] | None:
    """The stamp of the module ``module`` of the chains folder as it was executed, for an importer that has not noted
    it: as it was executed (:data:`_STAMPED`), else the oldest another importer noted (a file changed since any of
    them noted it is taken as changed); None where none is known."""
    stamped = _STAMPED.get(_key_held(module))
    if stamped is not None:
        return stamped
    file = getattr(sys.modules.get(module), "__file__", None)  # of that file: another type's of the name is not it
    notes = [noted[module] for noted in _IMPORTED.values() if module in noted and noted[module][0] == file]
    return min(notes, key=lambda note: note[1] or (0, 0)) if notes else None


def changed_imports(name: str, code: types.CodeType | None = None) -> list[str]:
    """The modules of the chains folder held in ``sys.modules`` that the chain module ``name`` imports (as its last
    execution found them: :data:`_IMPORTED`; and those ``code`` names, where given) whose file changed since they were
    noted, and those held that import one of them (and theirs): modules an execution or a module kept of ``name``
    must not take as they are (``python -m luigi`` executes each as it is now). A stat a module imported; nothing
    where ``name`` imports none."""
    imports: dict[str, tuple[str, Stamp | None] | None] = dict(_IMPORTED.get(name, {}))
    if code is not None:  # a module the new code names, not noted by it: judged by its own stamp as Python's import
        # executed it (for another importer, before the file changed), and by what it imports
        names = chain_imports(code, name.rpartition(".")[0])
        names |= _in_packages(names)
        imports.update({m: _as_executed(m) for m in names if m not in imports and m in sys.modules})
    if not imports:
        return []
    stale: dict[str, bool] = {name: False}
    found: dict[str, None] = {}  # each module that changed, or imports one: in the order found

    def moved(module: str, noted: tuple[str, Stamp | None] | None) -> bool:
        if module not in sys.modules:  # imported anew if at all
            return False
        # its own imports judged whether or not its file changed: a module it imports that changed is dropped with it
        # (its importer's execution finds it in sys.modules and does not execute it again), at any depth
        key = _keyed(module, noted[0] if noted is not None else None)
        changed = [noted is not None and file_stamp(noted[0]) != noted[1], imports_moved(key)]
        if any(changed) and module != name:
            found[module] = None
        return any(changed)

    def imports_moved(key: str) -> bool:
        if key not in stale:  # a cycle's module is taken as it is found once
            stale[key] = False
            stale[key] = any([moved(other, noted) for other, noted in _IMPORTED.get(key, {}).items()])
        return stale[key]

    for module, noted in sorted(imports.items()):
        moved(module, noted)
    return list(found)


def drop_changed_imports(name: str, code: types.CodeType | None = None) -> None:
    """:func:`changed_imports` of the chain module ``name`` taken out of ``sys.modules`` and out of luigi
    (:func:`forget_module`): the execution of ``name`` that follows imports each as its file is now."""
    for module in changed_imports(name, code):
        _dropped(module)


def drop_run_imports(names: Iterable[str], chains_dir: str) -> None:
    """Of the modules ``names`` a run's code imported (inside ``run()``: :func:`nectar.reuse.put_back`), each of the
    chains folder (named ``chains.<type>...``, or its file under ``chains_dir``: on a folder a chain file puts on
    ``sys.path``) that no chain module's execution executed (:data:`_STAMPED`: a chain file, a module one imports at
    its top, which :func:`changed_imports` judges) and that is no package, taken out (:func:`_dropped`): the process's
    next run imports it as its file is then, as ``python -m luigi``'s fresh process does, where it kept the first
    run's."""
    inside = os.path.join(chains_dir, "")
    for module in names:
        held = sys.modules.get(module)
        if held is None or _key_held(module) in _STAMPED or hasattr(held, "__path__"):
            continue
        file = getattr(held, "__file__", None)
        if _in_chains_folder(module) or (isinstance(file, str) and os.path.abspath(file).startswith(inside)):
            _dropped(module)


def _dropped(module: str) -> None:
    """The module ``module`` taken out of ``sys.modules``, off its package (``from <package> import <it>`` asks the
    package first) and out of luigi (:func:`forget_module`)."""
    held = sys.modules.pop(module, None)
    package, _, child = module.rpartition(".")
    named = getattr(sys.modules.get(package), child, None)  # from <package> import <it>: the package's attribute,
    # the module as Python's import executed it, where the catalog executed its file since (not set there)
    if held is not None and (named is held or getattr(named, "__name__", None) == module):
        delattr(sys.modules[package], child)
    forget_module(module)
