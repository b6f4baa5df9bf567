"""The standard library's private names that nectar/stdlib_internals.py relies on are there and behave as it relies
on. A failure here means a Python release changed one under the seam: adapt the seam (one module)."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import warnings
from configparser import ConfigParser
from multiprocessing import SimpleQueue
from multiprocessing.connection import wait
from pathlib import Path

import pytest

from nectar import stdlib_internals


def test_the_raw_handler_is_signals_own_answer_without_its_enum() -> None:
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        handler = stdlib_internals.raw_handler(signum)
        assert signal.getsignal(signum) == handler  # SIG_DFL and SIG_IGN as 0 and 1, which the enum members equal
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        assert stdlib_internals.raw_handler(signal.SIGUSR1) == 1
        assert stdlib_internals.raw_handler(signal.SIGUSR1) is stdlib_internals.raw_handler(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_the_raw_setter_sets_the_handler_and_answers_the_one_it_replaced_without_its_enum() -> None:
    def first(*_: object) -> None: ...

    def second(*_: object) -> None: ...

    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        assert stdlib_internals.raw_set_handler(signal.SIGUSR2, first) == signal.SIG_DFL  # 0: the member equals it
        assert signal.getsignal(signal.SIGUSR2) is first
        assert stdlib_internals.raw_set_handler(signal.SIGUSR2, second) is first
        assert stdlib_internals.raw_set_handler(signal.SIGUSR2, 1) is second  # SIG_IGN as Python holds it: 1
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
        assert stdlib_internals.raw_set_handler(signal.SIGUSR2, 0) == 1
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
        with pytest.raises(TypeError):  # an enum member is no handler of the C function's: what it answered is
            stdlib_internals.raw_set_handler(signal.SIGUSR2, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_the_environs_data_is_its_own_dictionary_of_bytes_kept_by_its_writes() -> None:
    data = stdlib_internals.environ_data()
    os.environ["NECTAR_SEAM_PROBE"] = "é"
    try:
        assert data[b"NECTAR_SEAM_PROBE"] == "é".encode()
        assert data is stdlib_internals.environ_data()
    finally:
        del os.environ["NECTAR_SEAM_PROBE"]
    assert b"NECTAR_SEAM_PROBE" not in data


def test_a_simple_queues_reader_is_the_connection_its_puts_reach() -> None:
    queue: SimpleQueue[str] = SimpleQueue()
    reader = stdlib_internals.queue_reader(queue)
    assert wait([reader], timeout=0) == []
    queue.put("news")
    assert wait([reader]) == [reader]
    assert queue.get() == "news"


def test_the_logging_lock_is_the_one_logging_takes_to_change_a_loggers_handlers() -> None:
    """Asked from inside ``Logger.addHandler`` and ``removeHandler`` (each asks whether the handler is in the
    logger's list, holding its lock; Python 3.11-3.12 through ``_acquireLock``, 3.13 with ``with _lock``)."""

    def free_elsewhere() -> bool:  # asked from another thread (the lock is reentrant), which lets go of it at once
        answer: list[bool] = []

        def ask() -> None:
            lock = stdlib_internals.logging_lock()
            answer.append(lock.acquire(blocking=False))
            if answer[0]:
                lock.release()

        thread = threading.Thread(target=ask)
        thread.start()
        thread.join()
        return answer[0]

    held: list[bool] = []

    class Handlers(list[logging.Handler]):
        def __contains__(self, handler: object) -> bool:
            held.append(not free_elsewhere())
            return super().__contains__(handler)

    logger = logging.getLogger("tests.stdlib_internals.lock")
    logger.handlers = Handlers()
    handler = logging.NullHandler()
    assert free_elsewhere()
    logger.addHandler(handler)
    logger.removeHandler(handler)
    assert held == [True, True]
    assert free_elsewhere()


def test_a_parsers_options_set_whole_read_as_options_it_read() -> None:
    config = ConfigParser()
    config.read_string("[DEFAULT]\nshared = 1\n[gone]\nx = 1\n[kept]\ny = %(shared)s\n")
    kept = config["kept"]

    stdlib_internals.set_parsed(config, {"shared": "2"}, {"kept": {"y": "%(shared)s"}, "new": {"z": "3"}})

    assert config.sections() == ["kept", "new"]
    assert config.get("kept", "y") == "2" and config["kept"] is kept  # a section's proxy kept
    assert dict(config["new"]) == {"z": "3", "shared": "2"} and config.defaults() == {"shared": "2"}
    assert not config.has_section("gone")
    assert config.items("kept", raw=True) == [("shared", "2"), ("y", "%(shared)s")]


def test_a_parsers_own_options_read_as_set_and_an_empty_sections_proxy_kept() -> None:
    """A section's own option equal to ``DEFAULT``'s is read as its own (:func:`parsed`); an empty section's proxy is
    kept (on main, a proxy's truth, its length 0 where ``DEFAULT`` is empty too, had it replaced)."""
    config = ConfigParser()
    config.read_string("[DEFAULT]\nx = 1\n[own]\nx = 1\n")
    defaults, sections = stdlib_internals.parsed(config)
    assert (defaults, sections) == ({"x": "1"}, {"own": {"x": "1"}})
    stdlib_internals.set_parsed(config, defaults, sections)
    config.set("DEFAULT", "x", "2")
    assert config.get("own", "x") == "1"

    bare = ConfigParser()
    bare.read_string("[empty]\n")
    empty = bare["empty"]
    stdlib_internals.set_parsed(bare, {}, {"empty": {}})
    assert bare["empty"] is empty


def test_the_warning_shower_is_what_catch_warnings_replaces_and_puts_back() -> None:
    shower = stdlib_internals.warning_shower()
    with warnings.catch_warnings(record=True) as caught:
        assert stdlib_internals.warning_shower() is not shower  # its list's append
        stdlib_internals.set_warning_shower(shower)
        assert stdlib_internals.warning_shower() is shower
        stdlib_internals.set_warning_shower(caught.append)
        warnings.simplefilter("always")
        warnings.warn("seam probe", UserWarning, stacklevel=1)
    assert [str(found.message) for found in caught] == ["seam probe"]
    assert stdlib_internals.warning_shower() is shower


def test_filters_changed_clears_what_a_modules_registry_noted_under_the_filters_before() -> None:
    registry: dict[str | tuple[str, type[Warning], int], int] = {}

    def warn() -> None:
        warnings.warn_explicit("seam probe", UserWarning, "seam.py", 1, registry=registry)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warn()
        warn()  # noted in the registry as shown: not shown again
        assert len(caught) == 1
        stdlib_internals.warnings_filters_changed()
        warn()  # the registry, noted under filters since changed, is cleared: shown again
    assert len(caught) == 2


def test_atexits_count_and_clear_are_its_callbacks() -> None:
    ran: list[int] = []
    held = stdlib_internals.exit_callbacks()
    atexit.register(ran.append, 1)
    atexit.register(ran.append, 2)
    assert stdlib_internals.exit_callbacks() == held + 2
    atexit.unregister(ran.append)  # its slots kept (counted) until cleared, in 3.11: not asked of the seam
    # cleared in a child, which has its own copy of the process's callbacks (the pytest process's kept)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            atexit.register(os.write, writer, b"cleared")
            stdlib_internals.forget_exit_callbacks()
            os.write(writer, b"%d" % stdlib_internals.exit_callbacks())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader, "rb") as out:
        assert out.read() == b"0"


def test_atexits_run_runs_its_callbacks_last_first_and_forgets_them() -> None:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # in a child: the pytest process's own callbacks are not run
        try:
            stdlib_internals.forget_exit_callbacks()
            atexit.register(os.write, writer, b"first")
            atexit.register(os.write, writer, b"last,")
            stdlib_internals.run_exit_callbacks()
            os.write(writer, b";%d" % stdlib_internals.exit_callbacks())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader, "rb") as out:
        assert out.read() == b"last,first;0"


def test_a_child_path_is_the_folders_entry_as_slash_makes_it(tmp_path: Path) -> None:
    for folder in (tmp_path, Path("relative/folder"), Path("/")):
        for name in ("entry.log", "chains.t.c.Task.0123.stdout.log", "é"):
            made = stdlib_internals.child_path(folder, name)
            expected = folder / name
            assert made == expected and type(made) is type(expected) and str(made) == str(expected)
            assert made.parts == expected.parts and made.name == name and made.parent == folder
    (tmp_path / "entry.log").write_text("here")
    assert stdlib_internals.child_path(tmp_path, "entry.log").read_text() == "here"


def test_an_event_made_lean_is_threadings_own_and_waits_wakes_and_clears_as_one() -> None:
    """new_event makes a ``threading.Event`` holding what ``threading.Event()`` holds (a Condition over a plain Lock,
    none of an RLock's methods), as this Python's threading still makes them (this fails loudly if a release makes
    them otherwise), and it waits, wakes, clears and times out as one."""
    assert stdlib_internals._made_as_threading_makes_them()
    made, theirs = stdlib_internals.new_event(), threading.Event()
    assert type(made) is threading.Event and set(vars(made)) == set(vars(theirs))
    condition, their_condition = vars(made)["_cond"], vars(theirs)["_cond"]
    assert type(condition) is threading.Condition
    assert {k: type(v) for k, v in vars(condition).items()} == {k: type(v) for k, v in vars(their_condition).items()}
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(made.wait(60)))
    waiter.start()
    made.set()
    waiter.join()
    assert woken == [True] and made.is_set()
    made.clear()
    assert made.wait(0.01) is False and not made.is_set()
    with condition:  # its Condition's lock, as Event's own methods take it
        assert not condition.acquire(False)
