"""How far a figure made of paired bursts can be trusted: a seeded bootstrap of its pairs, and when enough were taken.

Two figures of issue 21 are a ratio of two medians of pair ratios (each burst over the hello burst beside it),
judged at 0.95x: the new runs accepted behind a queue against the first, the lookups at 10,000 runs against 1,000.
Under a shared machine's load one pair's ratio reads 0.42 and the next 0.67, and ten pairs a side left the figure's
median anywhere in ~±10 %: the same code read 0.909x and 1.14x. So the figure is printed with its interval (95 %
shared among the looks at it, :func:`level`; a bootstrap of the pairs, seeded: the same pairs give the same
interval), and the rounds of pairs go on, within a cap, until the interval says the verdict or is as narrow as the
target's edge asks (:func:`enough`).
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple, TypeVar

T = TypeVar("T")

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
    if paired:
        if len(above) != len(below):
            raise ValueError(f"paired sides of {len(above)} and {len(below)} values")
        pairs = list(zip(above, below, strict=True))
        return of_rounds(
            pairs, lambda drawn: ratio_of_medians([a for a, _ in drawn], [b for _, b in drawn]), level, resamples, seed
        )
    rng = random.Random(seed)
    found = [
        ratio_of_medians(rng.choices(above, k=len(above)), rng.choices(below, k=len(below))) for _ in range(resamples)
    ]
    return percentiles(found, level)


def of_rounds(
    rounds: Sequence[T],
    figure: Callable[[Sequence[T]], float],
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The ``level`` percentile interval of ``figure`` over ``resamples`` resamples of ``rounds`` (seeded), each drawn
    whole: a round is what was measured together (a batch and the dispatch samples taken beside it, the two sides of
    a pair), so what the machine did to one round moves all of its parts in every resample alike.

    A resample drawn again (the same rounds in the same order: of 3 rounds there are only 27, and 2,000 resamples
    draw each ~74 times) reads the figure it read the first time, ``figure`` being a function of the rounds alone:
    the interval is the same to the bit, made of one call a distinct resample."""
    read: dict[tuple[int, ...], float] = {}
    found = []
    for drawn in _draws(len(rounds), resamples, seed):
        value = read.get(drawn)
        if value is None:
            value = read[drawn] = figure([rounds[n] for n in drawn])
        found.append(value)
    return percentiles(found, level)


@functools.lru_cache(maxsize=16)
def _draws(count: int, resamples: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """The indices of the rounds each of ``resamples`` resamples of ``count`` rounds draws, seeded: the same for the
    same three, whatever the rounds hold, so drawn once (a figure looked at again as its rounds grow, or another
    figure of the same rounds, resamples with the same draws; drawing them was two thirds of an interval's CPU)."""
    rng = random.Random(seed)
    return tuple(tuple(rng.randrange(count) for _ in range(count)) for _ in range(resamples))


def of_few_rounds(
    rounds: Sequence[T], figure: Callable[[Sequence[T]], float], level: float = LEVEL, seed: int = 0
) -> Interval:
    """:func:`of_rounds`, each end moved away from ``figure(rounds)`` (a ratio: as a ratio, its logarithm's distance
    multiplied, so that an end never reaches 0) by :func:`widening`: drawn from 3 to 8 rounds, the percentile
    interval alone holds the true figure far less often than its level says (a median of 3 draws of 3 values is one
    of them: the spread of the medians of the rounds, not of the figure). In a seeded simulation of the throughput
    figure's rounds (:mod:`benchmarks.throughput`, its true ratio the target's own, 0.8x; 5-10 % of noise on a
    round's rate, 30-40 % on a dispatch sample), 3 rounds asked and 5 at most at :func:`level`, the percentile
    interval alone decided a miss in 11-14 % of 300 figures and a met target in 8-10 %, where 2.5 % is each side's
    share; widened, 2.5-3 % and 0.5-1 % (round 62)."""
    found, at = of_rounds(rounds, figure, level, seed=seed), figure(rounds)
    by = widening(len(rounds), level)
    return Interval(at * (found.low / at) ** by, at * (found.high / at) ** by)


def widening(n: int, level: float) -> float:
    """How much wider than the percentile interval of ``n`` values an interval at ``level`` is drawn (Hesterberg's
    expanded percentile interval: ``sqrt(n / (n - 1))`` times Student's t with ``n - 1`` degrees of freedom over the
    normal's, at the level's tail): 1.0 with many values, ~3.9 with 3 at 98.33 %."""
    if n < 2:
        raise ValueError(f"an interval of {n} rounds")
    tail = 1 - (1 - level) / 2
    return math.sqrt(n / (n - 1)) * student_t(tail, n - 1) / statistics.NormalDist().inv_cdf(tail)


@functools.cache
def student_t(p: float, freedom: int) -> float:
    """The ``p`` quantile (``p`` > 0.5) of Student's t with ``freedom`` degrees of freedom: its density integrated from
    0 (Simpson's rule) and the bound bisected, to ~1e-6."""
    scale = math.gamma((freedom + 1) / 2) / (math.sqrt(freedom * math.pi) * math.gamma(freedom / 2))

    def density(x: float) -> float:
        return scale * (1 + x * x / freedom) ** (-(freedom + 1) / 2)

    def below(x: float, steps: int = 2_000) -> float:
        h = x / steps
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
        return 0.5 + (density(0) + density(x) + inner) * h / 3

    low, high = 0.0, 1_000.0
    while high - low > 1e-6:
        mid = (low + high) / 2
        low, high = (mid, high) if below(mid) < p else (low, mid)
    return (low + high) / 2


def percentiles(found: list[float], level: float) -> Interval:
    """The ``level`` percentile interval (two-sided, by nearest rank) of the resampled figures ``found``."""
    found = sorted(found)
    tail, resamples = (1 - level) / 2, len(found)
    return Interval(
        found[max(0, math.ceil(tail * resamples) - 1)], found[min(resamples, math.ceil((1 - tail) * resamples)) - 1]
    )


def resolution(limit: float) -> float:
    """The half-width an interval of a ratio judged at ``limit`` (≥ 0.95x: the same as 1x, or 5 % worse) must reach
    to tell the two apart: half the edge between them."""
    return abs(1 - limit) / 2


def reached(subject: float, limit: float, most: bool = False) -> bool:
    """Whether ``subject`` meets a target at ``limit``: at least it, or at most it with ``most``."""
    return subject <= limit if most else subject >= limit


def decides(found: Interval, limit: float, most: bool = False) -> bool:
    """Whether ``found`` decides its target at ``limit`` (at least it, or at most it with ``most``): met at both of its
    ends, or missed at both, the whole interval on one side of it."""
    return reached(found.low, limit, most) == reached(found.high, limit, most)


def enough(found: Interval, limit: float) -> bool:
    """Whether ``found`` (a ratio's interval) decides its target at ``limit`` (:func:`decides`) or is as narrow as
    :func:`resolution` asks."""
    return decides(found, limit) or found.half_width <= resolution(limit)


#: how many times a figure whose rounds are looked at by a schedule (:func:`scheduled_looks`) looks at its verdict
LOOKS = 4
#: each scheduled look past the first at least this many times the rounds of the one before (rounded up)
LOOK_GROWTH = 1.5


def scheduled_looks(repeats: int, looks: int = LOOKS) -> tuple[int, ...]:
    """The rounds taken when the verdict is looked at: ``repeats``, then each :data:`LOOK_GROWTH` times the last, the
    last of them the cap (5, 8, 12, 18 for 5 asked). As many looks as :func:`round_cap`'s 5 to 8 a round at a time (so
    the same :func:`looks_level`), for a cap more than twice as far: an interval's half-width falls as the square root
    of its rounds, and one look a round spent the looks where the width had barely moved."""
    at = [repeats]
    while len(at) < looks:
        at.append(max(at[-1] + 1, math.ceil(at[-1] * LOOK_GROWTH)))
    return tuple(at)


def looks_level(looks: int) -> float:
    """The level each interval of a figure is drawn at when its verdict is looked at ``looks`` times: they share
    :data:`LEVEL`'s error (Bonferroni)."""
    return 1 - (1 - LEVEL) / looks


def level(repeats: int, cap: int) -> float:
    """The level each interval of a figure is drawn at, when its verdict is looked at before each round past
    ``repeats`` (:func:`take_rounds`) and once more after the last: ``cap - repeats + 1`` looks, which share
    :data:`LEVEL`'s error (Bonferroni). At one level for every look, stopping at the first that decides decided a figure
    whose true ratio was the target's own (0.95x) a miss in 6.7 % of 300 simulated runs, where 2.5 % is the one look's
    share (review15, round 61: pairs' noise 10 % behind, 5 % first, 5 % shared a round); at this level, 2.3 %."""
    return looks_level(cap - repeats + 1)


def round_cap(repeats: int) -> int:
    """The rounds of pairs taken at most when ``repeats`` were asked (:data:`EXTRA_ROUNDS`)."""
    return repeats + math.ceil(EXTRA_ROUNDS * repeats)


def take_rounds(
    repeats: int,
    cap: int,
    one_round: Callable[[int], None],
    decided: Callable[[], bool],
    at: Collection[int] | None = None,
) -> int:
    """``one_round`` called with 0, 1, ...: ``repeats`` rounds, then more while not ``decided()`` (asked before each,
    or only once the rounds taken are one of ``at``: :func:`scheduled_looks`), ``cap`` at most. How many were taken."""
    for r in range(cap):
        if r >= repeats and (at is None or r in at) and decided():
            return r
        one_round(r)
    return cap


def said(found: Interval, pairs: int, rounds: int, limit: float, drawn_at: float = LEVEL) -> str:
    """The interval as a figure's text says it (drawn at ``drawn_at``: :func:`level`), with what it was drawn from and
    whether it decides the target."""
    return verdict(found, limit, drawn_at, f"a seeded bootstrap of {pairs} pairs a side, {rounds} rounds")


def verdict(found: Interval, limit: float, drawn_at: float, drawn_from: str) -> str:
    """``found`` (drawn at ``drawn_at``, from what ``drawn_from`` says) as a figure's text says it, and whether it
    decides the target at ``limit``, a ratio at least."""
    decided = "decides" if decides(found, limit) else "does not decide"
    return f"{drawn_at:.2%} interval {found} ({drawn_from}; it {decided} the ≥ {limit:g}x)"
