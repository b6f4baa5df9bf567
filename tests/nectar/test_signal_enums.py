"""What a spare does each run with its signal handlers (its chain file executed ahead under SIGALRM's budget, luigi's
worker made with its SIGUSR1 handler) converts no handler to or from ``signal``'s enums: a handler that is a function
costs an exception raised and caught each way (~30k instructions a ``signal.signal``, ~22k a ``signal.getsignal``,
callgrind), and the handlers set back are the same objects."""

from __future__ import annotations

import signal
from pathlib import Path

import luigi.scheduler
import pytest

from nectar.catalog.loader import load_ahead
from nectar.luigi_internals import new_worker


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each handler ``signal`` converts to or from its enums from now on (``signal``'s own helpers, watched)."""
    seen: list[object] = []
    to_enum, from_enum = signal._int_to_enum, signal._enum_to_int  # type: ignore[attr-defined]

    def watched_to_enum(value: object, enum_klass: type) -> object:
        seen.append(value)
        return to_enum(value, enum_klass)

    def watched_from_enum(value: object) -> object:
        seen.append(value)
        return from_enum(value)

    monkeypatch.setattr(signal, "_int_to_enum", watched_to_enum)
    monkeypatch.setattr(signal, "_enum_to_int", watched_from_enum)
    return seen


def test_a_chain_executed_ahead_sets_its_budgets_handler_and_the_one_before_back_without_an_enum(
    tmp_path: Path, conversions: list[object]
) -> None:
    def before(*_: object) -> None: ...

    path = tmp_path / "enum_chain.py"
    path.write_text("VALUE = 1\n")
    previous = signal.signal(signal.SIGALRM, before)
    try:
        conversions.clear()
        assert load_ahead(path, "enums", "enum_chain", budget=60)
        assert conversions == []
        assert signal.getsignal(signal.SIGALRM) is before
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_a_luigi_worker_made_again_finds_its_sigusr1_handler_without_an_enum(conversions: list[object]) -> None:
    scheduler = luigi.scheduler.Scheduler()
    new_worker(scheduler, "enums-1", 1)  # the process's first: its handler set (once per process)
    handler = signal.getsignal(signal.SIGUSR1)
    conversions.clear()
    new_worker(scheduler, "enums-2", 1)
    assert conversions == []
    assert signal.getsignal(signal.SIGUSR1) is handler
