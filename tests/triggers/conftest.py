"""Fixtures the trigger tests share: a registry of each kind, as the schedules' tests have it."""

from __future__ import annotations

import pytest

from nectar.config import Settings
from tests.schedules.conftest import on_registry


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings of a registry of each kind: SQLite in the data folder, or a fresh PostgreSQL database."""
    return on_registry(request, settings, request.param)
