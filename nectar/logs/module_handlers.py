"""The log handlers a chain module's execution added to loggers, taken off as the module is executed anew.

A chain file is executed as a fresh module for each run (:func:`~nectar.catalog.loader.load_chain_module`), but the
loggers it names are the process's, from one execution to the next: a chain that adds a handler as it is imported
(``logging.getLogger(__name__).addHandler(...)``) added one more each time, and a process's n-th run wrote each of
its records n times (measured: the n-th run of a reused attempt process held n handlers; at 1,000 runs a process,
1,000 copies of each line and as many files left open by file handlers). What an execution added is taken off (and
closed) before the next execution of the same module, in whatever process executes it again (a spare, the API's
catalog, a clock)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeGuard, cast

#: by chain module name, the handlers its last execution in this process added, and the loggers they were added to
_ADDED: dict[str, list[tuple[logging.Logger, logging.Handler]]] = {}
#: the handlers taken off as their module was executed anew: never given back to a logger (a reused process's
#: put-back of a run's logging, :func:`nectar.reuse.put_back`, restores the handlers as they were before the run)
RETIRED: weakref.WeakSet[logging.Handler] = weakref.WeakSet()


#: whether an object is a logger: ``isinstance(obj, logging.Logger)``, asked by ``filter`` in C
_is_logger = cast("Callable[[object], TypeGuard[logging.Logger]]", logging.Logger.__instancecheck__)


def loggers() -> list[logging.Logger]:
    """Every logger of the process, the root one first; the entries logging's manager keeps for dotted names under
    which no logger was made yet (``logging.PlaceHolder``) are no loggers and are left out. Filtered in C: four walks a
    reused attempt process's cycle, each ~38,800 instructions over ~100 loggers where a comprehension's was ~54,800
    (callgrind)."""
    return [*filter(_is_logger, (logging.getLogger(), *logging.Logger.manager.loggerDict.values()))]


def held(found: list[logging.Logger] | None = None) -> dict[logging.Logger, tuple[logging.Handler, ...]]:
    """Each logger of the process that holds a handler (the root one too), with its handlers: a walk of logging's
    loggers (~12 µs for the ~80 of an attempt process), or of those ``found`` by the caller's own :func:`loggers`.
    A comprehension: its specialized attribute reads cost half what ``filter`` and ``attrgetter`` cost in C (~13,500
    against ~29,000 instructions over ~100 loggers, callgrind)."""
    return {logger: tuple(logger.handlers) for logger in (loggers() if found is None else found) if logger.handlers}


@contextmanager
def executed_anew(module: str) -> Iterator[None]:
    """Around an execution of the chain module ``module``: the handlers its previous execution added taken off and
    closed first, those this one adds noted (as far as it went, if it raised)."""
    for logger, handler in _ADDED.pop(module, ()):
        RETIRED.add(handler)
        if handler in logger.handlers:
            logger.removeHandler(handler)
            handler.close()
    before = held()
    try:
        yield
    finally:
        added = [
            (logger, handler)
            for logger, handlers in held().items()
            for handler in handlers
            if handler not in before.get(logger, ())
        ]
        if added:
            _ADDED[module] = added
