"""What :func:`nectar.reuse.put_back` changes in a reused attempt process, seen from a thread of the process that
reads it meanwhile (the process's own threads: a registry's checkpointer, luigi's keep-alive, a thread a module keeps):
each change is whole for it, in the process of the test, with the thread held where it reads by events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nectar import reuse


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
