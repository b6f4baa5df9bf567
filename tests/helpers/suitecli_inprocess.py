"""A ``nectar`` command's refusal asked of :func:`nectar.cli.main` in the test's own process: its exit status and what
it wrote, as a ``subprocess.run`` of the command would answer them, without a process start (~0.3-0.5 s of CPU each:
an interpreter and the command's imports). For a test whose question is the message and the status; what only a
real process shows (its exit, its signals, what it started) keeps one end-to-end process per kind (round 68,
suitecli)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from nectar import config, supervisor
from nectar.cli import main
from nectar.executor import Executor
from nectar.schedules.clock import Clock

#: the signals a role's start takes (``lifeline.stops_exit_until_handled``, a worker's or a clock's own handlers)
STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Ended:
    """What a command ended with, named as :class:`subprocess.CompletedProcess` names it."""

    returncode: int
    stdout: str
    stderr: str


class Started(AssertionError):
    """A command that was to be refused began to serve: in the test's process it would serve on, so it fails here."""


def _never(what: str) -> object:
    def started(*_: object, **__: object) -> None:
        raise Started(f"{what} started: the command was not refused before it")

    return started


@contextlib.contextmanager
def _kept() -> Iterator[None]:
    """This process's signal handlers, signal mask and environment put back as they were (a role hands its part
    variables in ``os.environ`` before its exec)."""
    handlers = {signum: signal.getsignal(signum) for signum in STOPS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    environ = dict(os.environ)
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.environ.clear()
        os.environ.update(environ)


def nectar_in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: Sequence[str],
    env: Mapping[str, str | None],
    cwd: Path,
) -> Ended:
    """``nectar <argv>`` with ``env`` over this process's environment (None: unset) in ``cwd``, run by
    :func:`nectar.cli.main` here: its status (argparse's ``SystemExit`` included) and its stdout and stderr. Every
    setting, signal handler and variable the command sets is put back after it. A role's exec (gunicorn, luigid),
    ``serve``'s launch of its parts, a worker's or a clock's serving raise :class:`Started` instead (a refusal that
    came too late would serve on in the test's process)."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(config, "_current", config._current)
    monkeypatch.setattr(supervisor, "become", _never("an exec of a role (gunicorn, luigid)"))
    monkeypatch.setattr(supervisor.Supervisor, "launch", _never("nectar serve's parts"))
    monkeypatch.setattr(Executor, "serve_forever", _never("a worker's executor"))
    monkeypatch.setattr(Clock, "start", _never("a clock"))
    capsys.readouterr()  # what the test printed before
    with _kept():
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage error (2), or a command's SystemExit(message): 1, as Python's
            code = exc.code if isinstance(exc.code, int) else 1 if exc.code is not None else 0
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return Ended(code, out, err)
