"""The table's "met?" of a figure that carries an interval: the interval's verdict, undecided where it straddles."""

from __future__ import annotations

import pytest

from benchmarks import spread
from benchmarks.harness import Figure, Target, at_most, ratio_at_least, table
from benchmarks.spread import Interval


def judged(value: float, baseline: float, target: Target, spread: Interval | None) -> str:
    """The "met?" cell of the one row of a table of a figure ``value`` against ``baseline``."""
    figure = Figure("throughput", "runs/s", value, "/s", "2 ÷ dispatch median", baseline, target, spread=spread)
    row = table([figure]).splitlines()[-1]
    return row.split(" | ")[-1].removesuffix(" |")


@pytest.mark.parametrize(
    ("value", "spread", "met"),
    [
        (0.85, Interval(0.81, 0.9), "yes"),  # decided: met at both ends
        (0.75, Interval(0.7, 0.79), "**NO**"),  # decided: missed at both ends
        (0.82, Interval(0.78, 0.86), "yes (undecided)"),  # the point meets it, the interval straddles it
        (0.79, Interval(0.75, 0.84), "**NO** (undecided)"),  # the point misses it, the interval straddles it
        (0.8, Interval(0.8, 0.83), "yes"),  # an end on the limit meets it (≥): decided
        (0.79, None, "**NO**"),  # no interval: the point's verdict, plainly
    ],
)
def test_a_ratio_at_least_is_met_missed_or_undecided_by_its_interval(
    value: float, spread: Interval | None, met: str
) -> None:
    assert judged(value * 100, 100, ratio_at_least(0.8), spread) == met


@pytest.mark.parametrize(
    ("value", "spread", "met"),
    [
        (1.1, Interval(1.0, 1.2), "yes"),
        (1.3, Interval(1.26, 1.4), "**NO**"),
        (1.2, Interval(1.1, 1.3), "yes (undecided)"),
        (1.3, Interval(1.2, 1.4), "**NO** (undecided)"),
        (1.25, Interval(1.1, 1.25), "yes"),  # an end on the limit meets it (≤): decided
    ],
)
def test_a_value_at_most_is_met_missed_or_undecided_by_its_interval(value: float, spread: Interval, met: str) -> None:
    assert judged(value, 1, at_most(1.25, "≤ 1.25x"), spread) == met


def test_an_interval_that_decides_gives_the_verdict_where_the_point_would_not() -> None:
    """A bootstrap's interval can leave its point outside it (a median of few values): where it decides, its word."""
    assert judged(0.79 * 100, 100, ratio_at_least(0.8), Interval(0.8, 0.9)) == "yes"


def test_the_tables_columns_and_a_figure_without_target_are_as_before() -> None:
    figure = Figure("dispatch", "median POST → run()", 0.004, "ms", "-", None, spread=Interval(0.003, 0.005))
    head, _, row = table([figure]).splitlines()
    assert head == ("| benchmark | figure | value | baseline (what) | baseline value | ratio | target | met? |")
    assert row.endswith("| - | - | - |")


@pytest.mark.parametrize("most", [False, True])
@pytest.mark.parametrize(
    ("low", "high"), [(0.7, 0.75), (0.75, 0.8), (0.78, 0.82), (0.8, 0.8), (0.8, 0.85), (0.85, 0.9), (0.7, 0.9)]
)
def test_a_target_and_the_intervals_own_verdict_decide_alike(low: float, high: float, most: bool) -> None:
    """One rule of "decided" (met or missed at both ends) for a figure's verdict and for the rounds a benchmark takes
    until its interval decides (:func:`benchmarks.spread.decides`), at least or at most."""
    target = Target("ratio", most, 0.8, "")
    found = Interval(low, high)
    assert spread.decides(found, 0.8, most) == target.decides(found)
    assert spread.reached(low, 0.8, most) == target.reached(low)
