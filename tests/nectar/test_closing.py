"""What opens a registry closes it at its normal end, in this process: a ``Nectar`` (its ``close``, or as a context
manager), a worker's executor when it stops (the registry it opened, not one it was given), and the CLI's commands
(:func:`tests.helpers.registries.left_unclosed`: a store that still holds a connection, a descriptor or its turn)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from nectar import wakeup
from nectar.cli import main
from nectar.config import Settings
from nectar.executor import Executor
from nectar.registry import Run
from nectar.registry.sqlite import SQLiteRunStore
from nectar.service import Nectar
from tests.helpers import registries

#: the signals a worker's executor takes over while it serves (:meth:`Executor.serve_forever`)
TAKEN = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@pytest.fixture
def handlers_kept() -> Iterator[None]:
    """The test process's signal handlers, given back after an executor served in it."""
    kept = {signum: signal.getsignal(signum) for signum in TAKEN}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


def stopped_at_once(executor: Executor) -> None:
    """``executor`` served, asked to stop before it began: it claims nothing and ends its normal way."""
    executor.stop()
    executor.serve_forever()


def test_a_nectar_closes_the_registry_it_opened(settings: Settings) -> None:
    with Nectar(settings) as nectar:
        nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {})
        assert registries.left_unclosed() == [nectar.runs]  # in use: open
    assert registries.left_unclosed() == []


def test_a_nectar_that_never_opened_its_registry_closes_without_opening_it(settings: Settings) -> None:
    nectar = Nectar(settings)
    nectar.close()
    assert "runs" not in nectar.__dict__
    assert registries.left_unclosed() == []


@pytest.mark.usefixtures("handlers_kept")
def test_an_executor_closes_the_registry_it_opened_when_it_stops(settings: Settings) -> None:
    executor = Executor(settings)
    assert registries.left_unclosed() == [executor.runs]
    stopped_at_once(executor)
    assert registries.left_unclosed() == []


@pytest.mark.usefixtures("handlers_kept")
def test_an_executor_leaves_a_registry_it_was_given_to_its_caller(settings: Settings) -> None:
    with Nectar(settings) as nectar:
        stopped_at_once(Executor(settings, runs=nectar.runs))
        assert registries.left_unclosed() == [nectar.runs]  # the caller's, still in use
    assert registries.left_unclosed() == []


@pytest.mark.parametrize("command", ["status", "cancel"])
def test_a_cli_command_closes_its_registry(command: str, settings: Settings) -> None:
    nectar = Nectar(settings)
    submission = nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {})
    nectar.runs.close()  # the test's own, closed: the command's is what is looked at
    assert submission.run is not None
    target = str(submission.key) if command == "status" else submission.run.id
    dirs = ["--chains-dir", str(settings.chains_dir), "--data-dir", str(settings.data_dir)]
    assert main([command, *dirs, target]) in {0, 1}  # status: 1 while not DONE
    assert registries.left_unclosed() == []


def test_a_registry_is_closed_at_the_end_of_its_with(settings: Settings) -> None:
    with SQLiteRunStore(settings.registry_path) as runs:
        runs.submit(Run.new("chains/t/c_chain/ATask/0/out.txt", "t", "c_chain", "ATask", {}, "ATask_0"))
        assert registries.left_unclosed() == [runs]
    assert registries.left_unclosed() == []


def test_an_executor_that_never_served_closes_the_registry_it_opened(settings: Settings) -> None:
    executor = Executor(settings)
    executor.close()
    assert registries.left_unclosed() == []


def number_taken_again(number: int) -> int:
    """A descriptor (of ``/dev/null``) numbered ``number`` (free now): the numbers below it that are free are taken
    meanwhile, and given back after."""
    held: list[int] = []
    try:
        while (fd := os.open(os.devnull, os.O_RDONLY)) != number:
            assert fd < number, (number, fd)  # the lowest free number
            held.append(fd)
        return fd
    finally:
        for fd in held:
            os.close(fd)


@pytest.mark.usefixtures("handlers_kept")
def test_a_child_forked_after_an_executor_stopped_closes_none_of_its_parents_descriptors(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An executor served in this process and stopped; the number of the pipe that its signals were written to is
    then another descriptor's, which a child forked later still holds once it gave up its parent's signals (as the
    supervisor's check of the registry's schema does before it writes its answer to a pipe). The number was
    remembered after the stop, and the child closed it (CI, round 52: the check's answer to a newer release's
    registry was lost so, and the start went on)."""
    made: list[int | None] = []

    def signals() -> int | None:
        made.append(fd := wakeup_signals())
        return fd

    wakeup_signals = wakeup.signals
    monkeypatch.setattr(wakeup, "signals", signals)
    stopped_at_once(Executor(settings))
    assert made and made[0] is not None  # the test's main thread
    taken = number_taken_again(made[0])
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            wakeup.no_signals()
            try:
                os.fstat(taken)
                os.write(writable, b"still open")
            except OSError as exc:
                os.write(writable, str(exc).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writable)
    try:
        said = b"".join(iter(lambda: os.read(readable, 4096), b""))
    finally:
        os.close(readable)
        os.close(taken)
        os.waitpid(pid, 0)
    assert said == b"still open"
