"""The one module that touches the Python standard library's private names; everything else calls it.

``tests/nectar/test_stdlib_internals.py`` fails loudly, naming the name, when a Python release changes one of them
under us (``tests/test_seams.py`` finds a private name read anywhere else):

- ``_signal.getsignal`` and ``_signal.signal``, the C functions that ``signal.getsignal`` and ``signal.signal`` wrap
  (:data:`raw_handler`, :data:`raw_set_handler`);
- ``os.environ._data``, the mapping's own dictionary of bytes (:func:`environ_data`);
- ``logging._lock``, the module lock that ``Logger.addHandler`` and ``removeHandler`` hold (:func:`logging_lock`);
- ``ConfigParser``'s ``_sections``, ``_defaults`` and ``_proxies`` (:func:`parsed`, :func:`set_parsed`);
- ``warnings._showwarnmsg_impl`` and ``warnings._filters_mutated`` (:func:`warning_shower`,
  :func:`set_warning_shower`, :func:`warnings_filters_changed`);
- ``multiprocessing.SimpleQueue._reader``, the queue's reading end (:func:`queue_reader`);
- ``atexit._ncallbacks``, ``atexit._clear`` and ``atexit._run_exitfuncs`` (:func:`exit_callbacks`,
  :func:`forget_exit_callbacks`, :func:`run_exit_callbacks`);
- ``Path._make_child_relpath``, a folder's entry made without parsing its name (:data:`child_path`; Python 3.13's
  pathlib has none: there ``/``'s own ``joinpath``);
- ``threading.Event``'s ``_cond`` and ``_flag``, ``threading.Condition``'s ``_lock`` and ``_waiters``
  (:func:`new_event`).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from configparser import ConfigParser, SectionProxy
from multiprocessing.connection import Connection
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import Any

#: a signal's handler as Python holds it (no system call), read by the C function that ``signal.getsignal`` wraps to
#: answer SIG_DFL and SIG_IGN as enum members: ~0.4 µs a signal, where the C function's answer (the same object each
#: time: 0 and 1 for those two) takes ~20 ns
raw_handler: Callable[[int], Any] = sys.modules["_signal"].getsignal  # ``signal``'s C module, untyped

#: set a signal's handler and answer the one it replaces, as the C function that ``signal.signal`` wraps does: the
#: handlers as Python holds them (SIG_DFL and SIG_IGN as 0 and 1), without ``signal``'s conversions to and from its
#: enums, which raise and catch an exception for each handler that is a function (``int()`` of it, then the enum's
#: lookup of it): 30.9k instructions a call where a function replaces a function, 1.2k this way (callgrind, 200
#: calls); ``signal.getsignal`` of such a handler 22.0k, :data:`raw_handler` 0.9k. It takes SIG_DFL and SIG_IGN as 0 and
#: 1 only (an enum member is refused): a handler it or :data:`raw_handler` answered is one it takes back
raw_set_handler: Callable[[int, Any], Any] = sys.modules["_signal"].signal


#: ``folder / name`` for a ``name`` that is one entry of ``folder`` (no separator, not ``.`` or ``..``), made as pathlib
#: makes the entries of a folder it lists: ~0.3 µs, where ``/`` parses the name (~1.4 µs) and ``Path(text)`` the whole
#: path (~2.2 µs); where pathlib has no such (Python 3.13), ``/`` itself
child_path: Callable[[Path, str], Path] = vars(Path).get("_make_child_relpath", Path.joinpath)


def new_event() -> threading.Event:
    """A ``threading.Event``, made as ``threading.Event()`` makes it, without the three ``AttributeError``s its
    ``Condition`` raises and catches: over a plain ``Lock`` it looks for the lock's ``_release_save``,
    ``_acquire_restore`` and ``_is_owned`` (an ``RLock``'s), finds none and keeps its own methods, as this one does.
    22.4k instructions an Event where this makes one in 10.4k (callgrind); an attempt makes three on its way to
    ``run()`` (its lease's, its heartbeat's turn, luigi's keep-alive's). Where threading makes its Events otherwise (a
    release whose Condition holds more), ``threading.Event()`` itself."""
    if not _LEAN_EVENTS:
        return threading.Event()
    lock = threading.Lock()
    condition = _new_condition(threading.Condition)
    condition.__dict__.update(_lock=lock, acquire=lock.acquire, release=lock.release, _waiters=collections.deque())
    event = _new_event(threading.Event)
    event.__dict__.update(_cond=condition, _flag=False)
    return event


_new_condition = threading.Condition.__new__
_new_event = threading.Event.__new__


def _made_as_threading_makes_them() -> bool:
    """Whether an Event and its Condition hold what :func:`new_event` sets, and only that (this Python's threading)."""
    event = threading.Event()
    condition = event.__dict__.get("_cond")
    return (
        set(vars(event)) == {"_cond", "_flag"}
        and type(condition) is threading.Condition
        and set(vars(condition)) == {"_lock", "acquire", "release", "_waiters"}
        and type(vars(condition)["_lock"]) is type(threading.Lock())
        and type(vars(condition)["_waiters"]) is collections.deque
    )


#: whether :func:`new_event` makes its Events itself (threading made them as it does, as this module was imported)
_LEAN_EVENTS = _made_as_threading_makes_them()


def environ_data() -> dict[bytes, bytes]:
    """``os.environ``'s own dictionary (bytes to bytes, the process's environment as Python last set it), which
    ``os.environ``'s writes keep: copied and compared in ~3.5 µs, where the mapping's public copy and comparison
    decode every variable (~190 µs)."""
    data: dict[bytes, bytes] = vars(os.environ)["_data"]
    return data


def set_environ(values: Mapping[bytes, bytes | None]) -> None:
    """Each environment variable of ``values`` set to its value (None: unset), in ``os.environ``'s own dictionary
    (:func:`environ_data`) and the C library's environment (what ``os.environ``'s own writes change: a child
    process's), where it differs."""
    data = environ_data()
    for variable, value in values.items():
        if data.get(variable) == value:
            continue
        if value is None:
            os.unsetenv(variable)
            del data[variable]
        else:
            os.putenv(variable, value)
            data[variable] = value


def logging_lock() -> threading.RLock:
    """logging's module lock: what ``Logger.addHandler`` and ``removeHandler`` hold as they change a logger's list of
    handlers (made anew in a forked child by logging itself)."""
    lock: threading.RLock = vars(logging)["_lock"]
    return lock


def parsed(config: ConfigParser) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``config``'s ``DEFAULT`` options and each section's own options (raw values, keys as its ``optionxform`` made
    them), copied: what :func:`set_parsed` makes them again. A section's own option that its ``DEFAULT`` has too is
    its own (``items`` answers a section's merged with ``DEFAULT``'s: one left out where the two were equal read
    ``DEFAULT``'s once that changed, where a fresh parser reads the section's)."""
    state = vars(config)
    return dict(state["_defaults"]), {name: dict(options) for name, options in state["_sections"].items()}


def parsed_as(config: ConfigParser, state: tuple[dict[str, str], dict[str, dict[str, str]]]) -> bool:
    """Whether ``config``'s options are those of ``state`` (as :func:`parsed` copied them), compared where the parser
    holds them: nothing copied."""
    held = vars(config)
    return state == (held["_defaults"], held["_sections"])


def set_parsed(config: ConfigParser, defaults: dict[str, str], sections: dict[str, dict[str, str]]) -> None:
    """Make ``config``'s options ``defaults`` and ``sections`` (raw values, keys as its ``optionxform`` made them: as
    its ``items(raw=True)`` answers them) in one step for any other thread: a thread reading ``config`` meanwhile
    finds it whole as it was or whole as given, never a section taken off and not yet put back, as changes made
    section by section let it."""
    state = vars(config)
    held = state["_proxies"]
    # a proxy as ``is None`` tells it (a proxy's truth is its length: an empty section's is 0, and the proxy a user's
    # code holds would be replaced)
    proxies = {
        name: SectionProxy(config, name) if (proxy := held.get(name)) is None else proxy
        for name in [config.default_section, *sections]
    }
    # one dict.update of str keys: no Python code runs in it, so no other thread between its three assignments
    state.update(
        _sections={name: dict(options) for name, options in sections.items()},
        _defaults=dict(defaults),
        _proxies=proxies,
    )


def warning_shower() -> Callable[[warnings.WarningMessage], None]:
    """``warnings._showwarnmsg_impl``: what shows a warning while ``warnings.showwarning`` is not replaced, and what
    ``catch_warnings(record=True)`` replaces with its list's ``append`` until its exit puts it back."""
    shower: Callable[[warnings.WarningMessage], None] = vars(warnings)["_showwarnmsg_impl"]
    return shower


def set_warning_shower(shower: Callable[[warnings.WarningMessage], None]) -> None:
    """Make ``shower`` what shows a warning while ``warnings.showwarning`` is not replaced (:func:`warning_shower`),
    as ``catch_warnings``' exit does."""
    vars(warnings)["_showwarnmsg_impl"] = shower


def warnings_filters_changed() -> None:
    """Tell ``warnings`` that its filters changed (``warnings._filters_mutated``, as ``simplefilter``,
    ``filterwarnings``, ``resetwarnings`` and ``catch_warnings`` do): each module's registry of the warnings it
    already showed or ignored (``__warningregistry__``, noted under the filters then) is cleared at its next warning,
    so the filters now decide."""
    vars(warnings)["_filters_mutated"]()


def queue_reader(queue: SimpleQueue[Any]) -> Connection:
    """The reading end of ``queue`` (to wait on it with :func:`multiprocessing.connection.wait`)."""
    reader: Connection = vars(queue)["_reader"]
    return reader


def exit_callbacks() -> int:
    """How many callbacks ``atexit`` holds (``atexit._ncallbacks``: one C call); in 3.11, one unregistered too (its
    slot is kept until they are all cleared or run)."""
    return atexit._ncallbacks()


def forget_exit_callbacks() -> None:
    """Forget every callback ``atexit`` holds, none run (``atexit._clear``)."""
    atexit._clear()


def run_exit_callbacks() -> None:
    """Run every callback ``atexit`` holds, the last registered first, as the interpreter's end does, and forget them
    (``atexit._run_exitfuncs``): :func:`nectar.exits.exit_now`'s end without the teardown."""
    atexit._run_exitfuncs()


def url_opener() -> Any:
    """What ``urllib.request.urlopen`` opens with, as ``install_opener`` set it (``urllib.request._opener``; None: the
    one ``urlopen`` makes on its first call), or None where ``urllib.request`` is not imported."""
    module = sys.modules.get("urllib.request")
    return None if module is None else vars(module).get("_opener")


def set_url_opener(opener: Any) -> None:
    """Make ``opener`` what ``urllib.request.urlopen`` opens with (``install_opener``; None: a default one made at the
    next call), where ``urllib.request`` is imported."""
    module = sys.modules.get("urllib.request")
    if module is not None:
        vars(module)["_opener"] = opener
