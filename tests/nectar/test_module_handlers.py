"""The loggers of the process, and those holding handlers, as :mod:`nectar.logs.module_handlers` lists them for each
execution of a chain module anew and each run of a reused process (:mod:`nectar.reuse`)."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator

import pytest

from nectar.logs import module_handlers
from nectar.logs.module_handlers import held, loggers


class OwnLogger(logging.Logger):
    """A logger class a chain may set (``logging.setLoggerClass``)."""


@pytest.fixture
def made() -> Iterator[list[logging.Logger]]:
    """Loggers of several kinds made under one dotted prefix (its parents placeholders), taken out of logging's
    manager after the test."""
    manager = logging.Logger.manager
    names = ["module_handlers_probe.a.b", "module_handlers_probe.own.c"]
    loggers_made = [logging.getLogger(names[0])]
    was = manager.loggerClass
    manager.setLoggerClass(OwnLogger)
    try:
        loggers_made.append(logging.getLogger(names[1]))
    finally:
        manager.loggerClass = was
    handler = logging.NullHandler()
    loggers_made[1].addHandler(handler)
    yield loggers_made
    loggers_made[1].removeHandler(handler)
    for name in [name for name in manager.loggerDict if name.startswith("module_handlers_probe")]:
        del manager.loggerDict[name]


def test_the_loggers_listed_are_every_logger_the_root_first_and_no_placeholder(made: list[logging.Logger]) -> None:
    found = loggers()
    every = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    assert found == [logger for logger in every if isinstance(logger, logging.Logger)]
    assert found[0] is logging.getLogger()
    assert all(logger in found for logger in made)
    placeholders = [
        logging.Logger.manager.loggerDict[name] for name in ["module_handlers_probe", "module_handlers_probe.a"]
    ]
    assert all(isinstance(placeholder, logging.PlaceHolder) for placeholder in placeholders)
    assert not [logger for logger in found if isinstance(logger, logging.PlaceHolder)]
    assert held()[made[1]] == tuple(made[1].handlers)
    assert made[0] not in held()


def test_the_loggers_are_listed_without_a_walk_in_python(made: list[logging.Logger]) -> None:
    """Four walks of ~100 loggers a reused attempt process's cycle: the loggers are filtered in C, no frame of this
    module's but the call's own runs."""
    frames: list[str] = []

    def seen(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename == module_handlers.__file__:
            frames.append(frame.f_code.co_name)

    was = sys.getprofile()
    sys.setprofile(seen)
    try:
        found = loggers()
    finally:
        sys.setprofile(was)
    assert frames == ["loggers"]
    assert made[1] in found
