"""What the fuzz run saw, per operation: filled by tests/security/test_fuzz.py, printed by reports.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class OperationStats:
    """One operation's fuzz cases and what their answers broke."""

    cases: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    #: failures of the other checks (status code, content type, the envelope's status)
    other_failures: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


#: operation label ("GET /api/chains") -> its stats, in the order the operations ran
STATS: dict[str, OperationStats] = {}


def stats_of(label: str) -> OperationStats:
    return STATS.setdefault(label, OperationStats())


def total_cases() -> int:
    return sum(stats.cases for stats in STATS.values())


def summary_lines() -> list[str]:
    """The table: operation, cases, 5xx, schema violations, other failures, status codes seen."""
    header = ("operation", "cases", "5xx", "schema violations", "other failures", "statuses seen")
    rows: list[tuple[str, ...]] = [
        (
            label,
            str(s.cases),
            str(s.server_errors),
            str(s.schema_violations),
            str(s.other_failures),
            " ".join(f"{code}x{n}" for code, n in sorted(s.statuses.items())),
        )
        for label, s in STATS.items()
    ]
    totals = [sum(getattr(s, name) for s in STATS.values()) for name in ("cases", "server_errors")]
    totals += [sum(getattr(s, name) for s in STATS.values()) for name in ("schema_violations", "other_failures")]
    rows.append(("TOTAL", *(str(n) for n in totals), ""))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i in (0, 5) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]
