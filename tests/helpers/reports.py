"""The tables printed after the test summary (fault injection, scale-out, fuzz), gathered wherever tests run.

Under pytest-xdist each worker process runs some of the tests: it hands its rows to the controller when it
finishes (``workeroutput``), and the controller prints every worker's rows as one table (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.helpers.fuzzstats import STATS, OperationStats, summary_lines

#: title -> (the header lines, the rows) of each table, in the order the first row of each arrived
TABLES: dict[str, tuple[list[str], list[str]]] = {}


def add_row(title: str, header: Sequence[str], row: str) -> None:
    """One line of the table ``title``, which opens with ``header``."""
    TABLES.setdefault(title, (list(header), []))[1].append(row)


def dump() -> dict[str, Any]:
    """This process's rows and fuzz figures, in the plain types execnet sends."""
    fuzz = {
        label: [s.cases, s.server_errors, s.schema_violations, s.other_failures, sorted(s.statuses.items())]
        for label, s in STATS.items()
    }
    return {"tables": {title: [header, rows] for title, (header, rows) in TABLES.items()}, "fuzz": fuzz}


def merge(dumped: dict[str, Any] | None) -> None:
    """Add what a worker's :func:`dump` returned to this process's tables."""
    if not dumped:
        return
    for title, (header, rows) in dumped["tables"].items():
        for row in rows:
            add_row(title, header, row)
    for label, (cases, server_errors, schema_violations, other_failures, statuses) in dumped["fuzz"].items():
        stats = STATS.setdefault(label, OperationStats())
        stats.cases += cases
        stats.server_errors += server_errors
        stats.schema_violations += schema_violations
        stats.other_failures += other_failures
        stats.statuses.update(dict(statuses))


def write(terminalreporter: pytest.TerminalReporter) -> None:
    """Every table, then the fuzz summary."""
    for title, (header, rows) in TABLES.items():
        terminalreporter.write_sep("=", title)
        for line in (*header, *rows):
            terminalreporter.write_line(line)
    if STATS:
        terminalreporter.section("schemathesis fuzz summary")
        for line in summary_lines():
            terminalreporter.write_line(line)
