"""A clock the test moves, put in place of the ``time`` module of the nectar modules that read the time."""

from __future__ import annotations

import time
from types import ModuleType

import pytest


class Clock:
    """Wall and monotonic time standing still at ``start`` until :meth:`advance` (or ``sleep``) moves both."""

    def __init__(self, start: float) -> None:
        self.now = start
        self._monotonic_offset = time.monotonic() - start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now + self._monotonic_offset

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def install(self, monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> Clock:
        """Make each module's ``time.time``/``time.monotonic``/``time.sleep`` this clock's, for the test."""
        for module in modules:
            monkeypatch.setattr(module, "time", self)
        return self
