"""The security suite's report: the fuzz run's cases and failures per operation, after the test summary."""

from __future__ import annotations

import pytest

from tests.helpers.fuzzstats import STATS, summary_lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    terminalreporter.section("schemathesis fuzz summary")
    for line in summary_lines():
        terminalreporter.write_line(line)
