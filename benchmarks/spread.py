"""How far a figure made of paired bursts can be trusted: a seeded bootstrap of its pairs, and when enough were taken.

Two figures of issue 21 are a ratio of two medians of pair ratios (each burst over the hello burst beside it), judged
at 0.95x: the new runs accepted behind a queue against the first, the lookups at 10,000 runs against 1,000. Under a
shared machine's load one pair's ratio reads 0.42 and the next 0.67, and ten pairs a side left the figure's median
anywhere in ~±10 %: the same code read 0.909x and 1.14x. So the figure is printed with its 95 % interval (a bootstrap
of the pairs, seeded: the same pairs give the same interval), and the rounds of pairs go on, within a cap, until the
interval says the verdict or is as narrow as the target's edge asks (:func:`enough`).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

#: resamples of the pairs a bootstrap interval is drawn from (its ends move by ~1 % of its width between seeds)
RESAMPLES = 2_000
#: the interval's level, two-sided
LEVEL = 0.95
#: the rounds of pairs added past the ``--repeats`` asked at most, as a share of them: every burst is sized from the
#: rate measured on this machine to last the same seconds on any machine, so a count of rounds is a bound of time
#: (half the paired bursts' time again, at most)
EXTRA_ROUNDS = 0.5


class Interval(NamedTuple):
    """An estimate's interval: its lower and upper ends."""

    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.low:.3f}-{self.high:.3f}"


def ratio_of_medians(above: Sequence[float], below: Sequence[float]) -> float:
    """The median of ``above`` over the median of ``below``: the figure."""
    return statistics.median(above) / statistics.median(below)


def interval(
    above: Sequence[float],
    below: Sequence[float],
    paired: bool,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The ``level`` percentile interval of :func:`ratio_of_medians` over ``resamples`` resamples of the pairs.

    ``paired``: ``above[n]`` and ``below[n]`` were measured beside each other (in the same round, the machine's load
    on both alike), so the same ``n`` are drawn for both, which keeps what the load moved alike out of the interval;
    otherwise (two phases apart in time) each side is drawn on its own."""
    if paired and len(above) != len(below):
        raise ValueError(f"paired sides of {len(above)} and {len(below)} values")
    rng = random.Random(seed)
    found = []
    for _ in range(resamples):
        if paired:
            picks = [rng.randrange(len(above)) for _ in above]
            a, b = [above[n] for n in picks], [below[n] for n in picks]
        else:
            a, b = rng.choices(above, k=len(above)), rng.choices(below, k=len(below))
        found.append(ratio_of_medians(a, b))
    found.sort()
    tail = (1 - level) / 2
    return Interval(
        found[max(0, math.ceil(tail * resamples) - 1)], found[min(resamples, math.ceil((1 - tail) * resamples)) - 1]
    )


def resolution(limit: float) -> float:
    """The half-width an interval of a ratio judged at ``limit`` (≥ 0.95x: the same as 1x, or 5 % worse) must reach
    to tell the two apart: half the edge between them."""
    return abs(1 - limit) / 2


def enough(found: Interval, limit: float) -> bool:
    """Whether ``found`` (a ratio's interval) decides its target at ``limit`` (the whole interval on one side of it)
    or is as narrow as :func:`resolution` asks."""
    return found.low >= limit or found.high < limit or found.half_width <= resolution(limit)


def round_cap(repeats: int) -> int:
    """The rounds of pairs taken at most when ``repeats`` were asked (:data:`EXTRA_ROUNDS`)."""
    return repeats + math.ceil(EXTRA_ROUNDS * repeats)


def take_rounds(repeats: int, cap: int, one_round: Callable[[int], None], decided: Callable[[], bool]) -> int:
    """``one_round`` called with 0, 1, ...: ``repeats`` rounds, then more while not ``decided()`` (asked before each),
    ``cap`` at most. How many were taken."""
    for r in range(cap):
        if r >= repeats and decided():
            return r
        one_round(r)
    return cap


def said(found: Interval, pairs: int, rounds: int, limit: float) -> str:
    """The interval as a figure's text says it, with what it was drawn from and whether it decides the target."""
    verdict = "decides" if found.low >= limit or found.high < limit else "does not decide"
    return (
        f"{LEVEL:.0%} interval {found} (a seeded bootstrap of {pairs} pairs a side, {rounds} rounds; it {verdict} the "
        f"≥ {limit:g}x)"
    )
