"""What :func:`nectar.reuse.put_back` changes in a reused attempt process, seen from a thread of the process that
reads it meanwhile (the process's own threads: a registry's checkpointer, luigi's keep-alive, a thread a module keeps):
each change is whole for it, in the process of the test, with the thread held where it reads by events."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import luigi.configuration
import pytest

from nectar import reuse
from nectar.config import Settings

if TYPE_CHECKING:
    from _typeshed import TraceFunction


class Gate(logging.Handler):
    """A handler that holds the thread logging through it until told to go on."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.go = threading.Event(), threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.go.wait()


@pytest.fixture
def probe_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("nectar_tests.reuse_threads")
    logger.propagate = False  # pytest's own handlers on the root logger left out
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def test_a_thread_logging_as_its_process_is_put_back_never_reaches_a_handler_the_run_added(
    probe_logger: logging.Logger, tmp_path: Path
) -> None:
    """The thread has the logger's handlers in hand (it logs through the first, held at its gate) as the process
    puts back the handlers (the run added a file's, second), and closes it: the thread goes on down the list, which
    no longer holds it. Before, the list was replaced, and the thread, on the old one, wrote to the closed handler,
    which opened its file again (a descriptor the run left, a line in the run's file)."""
    gate = Gate()
    probe_logger.addHandler(gate)
    before = reuse.before_run()
    added = logging.FileHandler(tmp_path / "the run's.log")  # the run's
    probe_logger.addHandler(added)
    thread = threading.Thread(target=probe_logger.warning, args=("logged by a thread of the process",))
    thread.start()
    gate.entered.wait()

    reuse.put_back(before)
    gate.go.set()
    thread.join()

    assert probe_logger.handlers == [*before.loggers[probe_logger]]  # pytest's own besides the gate
    assert added.stream is None  # closed, not opened again
    assert "logged by a thread of the process" not in (tmp_path / "the run's.log").read_text()


class Reader:
    """A thread that reads what ``read`` answers each time the main thread lets it (:meth:`at_each_line`: at every
    line the main thread runs while traced), the main thread waiting for each answer."""

    def __init__(self, read: Callable[[], object]) -> None:
        self.read, self.answers = read, Counter[object]()
        self.asked, self.answered, self.done = threading.Event(), threading.Event(), False
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        while self.asked.wait() and not self.done:
            self.asked.clear()
            self.answers[self.read()] += 1
            self.answered.set()

    def at_each_line(self, frame: FrameType, event: str, arg: Any) -> TraceFunction:
        if event == "line":
            self.answered.clear()
            self.asked.set()
            self.answered.wait()
        return self.at_each_line

    def stop(self) -> None:
        self.done = True
        self.asked.set()
        self.thread.join()


@pytest.fixture
def probe_section() -> Iterator[str]:
    config = luigi.configuration.get_config()
    config.set("nectar_tests_reuse", "kept", "as before the run")
    yield "nectar_tests_reuse"
    config.remove_section("nectar_tests_reuse")


def test_luigis_configuration_read_by_a_thread_as_its_process_puts_it_back_is_whole(probe_section: str) -> None:
    """A thread of the process reads an option of luigi's configuration the run did not change, at each line the
    process runs as it puts the configuration back: it finds it each time. Before, the sections were taken off one
    by one and added back one by one: between the two, the thread found no such section."""
    config = luigi.configuration.get_config()
    before = reuse.before_run()
    config.set(probe_section, "changed", "by the run")  # the run's
    reader = Reader(lambda: luigi.configuration.get_config().get(probe_section, "kept", "(none)"))

    sys.settrace(reader.at_each_line)
    try:
        reuse.put_back(before)
    finally:
        sys.settrace(None)
        reader.stop()

    assert not config.has_option(probe_section, "changed")
    assert set(reader.answers) == {"as before the run"}, reader.answers
    assert reader.answers["as before the run"] > 100  # read at each line of the put-back


@pytest.fixture
def looked_between_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's descriptors as they were between its runs: those open now."""
    monkeypatch.setattr(reuse, "_ids_between", reuse._open_ids())


def test_a_file_a_thread_of_the_process_holds_as_it_looks_for_what_its_run_left_open_retires_it_not(
    looked_between_runs: None, tmp_path: Path
) -> None:
    """A thread of the process's own has a file open (held so by events) as the process looks for what its run left
    open, and closes it before the process, set up for its next run, looks again: the process may take it. Before,
    the one look retired the process, as if its run had left the file open."""
    opened, close, closed = threading.Event(), threading.Event(), threading.Event()

    def holds_a_file() -> None:
        with open(tmp_path / "a thread's", "w"):
            opened.set()
            close.wait()
        closed.set()

    thread = threading.Thread(target=holds_a_file)
    thread.start()
    opened.wait()
    reuse.look_for_open()
    close.set()
    closed.wait()
    thread.join()

    assert reuse.left_open() is None


def test_the_registrys_folder_synced_by_a_thread_across_both_looks_retires_the_process_not(
    looked_between_runs: None, settings: Settings
) -> None:
    """SQLite syncs a database's folder as a connection first syncs its WAL (the folder opened, ``fdatasync``, closed:
    strace shows it), from whichever thread of the process writes or checkpoints; a disk slow to sync holds it open
    across both looks. On main that retired the process: "its run left open 1 file descriptor(s): <data folder>"."""
    folder = settings.registry_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    syncing, go = threading.Event(), threading.Event()

    def syncs_the_folder() -> None:  # as SQLite's unixSync does, held in it by events as a slow disk holds it
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syncing.set()
            go.wait()
            os.fdatasync(fd)
        finally:
            os.close(fd)

    thread = threading.Thread(target=syncs_the_folder)
    thread.start()
    syncing.wait()
    try:
        reuse.look_for_open()
        assert reuse.left_open() is None
    finally:
        go.set()
        thread.join()


def test_a_folder_its_run_left_open_beside_the_registry_retires_the_process(
    looked_between_runs: None, settings: Settings
) -> None:
    """Only the registry's folder itself is the process's own: a folder in it that a run left open retires it."""
    folder = settings.registry_path.parent / "a run's"
    folder.mkdir(parents=True)
    left = os.open(folder, os.O_RDONLY)  # the run's, left open
    try:
        reuse.look_for_open()
        assert reuse.left_open() == f"its run left open 1 file descriptor(s): {folder.resolve()}"
    finally:
        os.close(left)


def test_a_file_its_run_left_open_is_still_open_at_the_second_look_and_retires_the_process(
    looked_between_runs: None, tmp_path: Path
) -> None:
    path = tmp_path / "the run's"
    left = open(path, "w")  # the run's, left open
    try:
        reuse.look_for_open()
        assert reuse.left_open() == f"its run left open 1 file descriptor(s): {path.resolve()}"
        assert reuse.left_open() is None  # looked at once: the process it named retires
    finally:
        left.close()


def test_a_sections_own_option_equal_to_defaults_is_its_own_after_a_put_back(probe_section: str) -> None:
    """A section's own option equal to ``DEFAULT``'s, put back after a run changed luigi's configuration, is still the
    section's: a later run that changes ``DEFAULT``'s reads the section's, as in a fresh process. On main, put back
    without it (each section's options were read merged with ``DEFAULT``'s, those equal to it left out): the later
    run read ``DEFAULT``'s."""
    config = luigi.configuration.get_config()
    config.defaults()["nectar_tests_shared"] = "the file's"  # (luigi's parser sets no DEFAULT option: its dict's)
    config.set(probe_section, "nectar_tests_shared", "the file's")
    try:
        before = reuse.before_run()
        config.set(probe_section, "changed", "by the run")  # the run's
        reuse.put_back(before)
        config.defaults()["nectar_tests_shared"] = "a later run's"

        assert config.get(probe_section, "nectar_tests_shared") == "the file's"
    finally:
        del config.defaults()["nectar_tests_shared"]


def test_a_root_logger_and_manager_the_run_replaced_are_put_back_and_its_handlers_closed(tmp_path: Path) -> None:
    """A run that makes a hierarchy of loggers of its own (``logging.root``, ``Logger.root``, ``Logger.manager``
    replaced) leaves the process's as before it once put back, the handler it added to its root closed. On main, the
    process's next runs logged to the run's root (none of the worker's handlers), its file left open."""
    was = (logging.root, logging.Logger.root, logging.Logger.manager)
    before = reuse.before_run()
    runs = logging.RootLogger(logging.WARNING)
    logging.root = logging.Logger.root = runs
    logging.Logger.manager = logging.Manager(runs)
    added = logging.FileHandler(tmp_path / "the run's.log")
    runs.addHandler(added)
    try:
        reuse.put_back(before)

        assert (logging.root, logging.Logger.root, logging.Logger.manager) == was
        assert logging.getLogger() is was[0] and added.stream is None
    finally:
        logging.root, logging.Logger.root, logging.Logger.manager = was
        added.close()


def test_a_record_factory_and_logger_class_the_run_set_are_put_back() -> None:
    """On main, left as the run set them: the process's next runs' records were made by the run's factory."""
    was = (logging.getLogRecordFactory(), logging.getLoggerClass())
    before = reuse.before_run()

    class RunsLogger(logging.Logger):
        pass

    logging.setLogRecordFactory(lambda *args, **kwargs: was[0](*args, **kwargs))
    logging.setLoggerClass(RunsLogger)
    try:
        reuse.put_back(before)

        assert (logging.getLogRecordFactory(), logging.getLoggerClass()) == was
    finally:
        logging.setLogRecordFactory(was[0])
        logging.setLoggerClass(was[1])
