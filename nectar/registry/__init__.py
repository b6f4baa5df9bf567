"""The run registry: every run submitted, its attempts, its state, and each step of its chain.

:mod:`~nectar.registry.model` holds the data, :mod:`~nectar.registry.store` the interface
(``RunStore``), :mod:`~nectar.registry.sql` the queries and :mod:`~nectar.registry.schema` the
tables, written once for every SQL dialect; a dialect (:mod:`~nectar.registry.sqlite`, one file
in the data folder by default, or :mod:`~nectar.registry.postgres`, shared by many machines)
holds only what its database does differently. :func:`open_run_store` picks one from
:data:`DIALECTS`, importing only that one (psycopg only where PostgreSQL is used).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nectar.registry.model import (
    STEP_STATES,
    Attempt,
    Durations,
    RetryPolicy,
    Run,
    RunFilter,
    RunState,
    Step,
    jsonable_attempt,
    jsonable_run,
)
from nectar.registry.store import RunStore

if TYPE_CHECKING:
    from nectar.config import Settings

__all__ = [
    "DIALECTS",
    "STEP_STATES",
    "Attempt",
    "Durations",
    "RetryPolicy",
    "Run",
    "RunFilter",
    "RunState",
    "RunStore",
    "Step",
    "dialect_of",
    "jsonable_attempt",
    "jsonable_run",
    "open_run_store",
]


def _sqlite(settings: Settings) -> RunStore:
    from nectar.registry.sqlite import SQLiteRunStore

    return SQLiteRunStore.from_settings(settings)


def _postgres(settings: Settings) -> RunStore:
    from nectar.registry.postgres import PostgresRunStore  # imports psycopg: the postgres extra

    return PostgresRunStore.from_settings(settings)


#: each dialect's opener, which imports its module only when it is chosen; a new dialect is a file and a line
DIALECTS: dict[str, Callable[[Settings], RunStore]] = {"sqlite": _sqlite, "postgresql": _postgres}


def dialect_of(settings: Settings) -> str:
    """PostgreSQL when ``NECTAR_DATABASE_URL`` is set, else SQLite in the data folder."""
    return "postgresql" if settings.database_url else "sqlite"


def open_run_store(settings: Settings) -> RunStore:
    """The registry the settings name."""
    return DIALECTS[dialect_of(settings)](settings)
