"""The intervals of the figures judged at a target that are made of rounds: what a round holds is drawn whole."""

from __future__ import annotations

import random
import statistics
import subprocess
from collections.abc import Callable
from typing import cast

import pytest

import benchmarks.spread as spread
import benchmarks.throughput as throughput
from benchmarks.harness import Cluster
from benchmarks.machine import Calibration
from benchmarks.status import ratio_median
from tests.benchmarks.rounds import RoundsCluster

#: the ms of CPU a run cost each process, as :func:`benchmarks.throughput.measured` gives them (every part's: 3 ms)
PER_RUN = {
    "the worker's loop": (0.25, 0.05),
    "its attempt processes": (1.5, 0.5),
    "luigid": (0.3, 0.0),
    "API": (0.4, 0.0),
}


def batch(slots: int, rate: float) -> throughput.Batch:
    return throughput.Batch(slots, rate, "", PER_RUN, Calibration(9.0, 3.0), (12.0, 12.0))


def scaling_round(two: float, one: float, settled_ms: list[float]) -> throughput.Round:
    settled = [ms / 1000 for ms in settled_ms]
    return throughput.Round(batch(2, two), batch(1, one), settled, settled, [False] * len(settled))


def test_a_round_moved_whole_by_the_load_leaves_the_dispatch_figures_interval_a_point() -> None:
    """Each round's 2 workers' rate and its settled dispatch samples moved by the same load (the rate 2x slower
    where each sample is 2x longer): drawn whole, every resample reads the same ratio; the same rates and samples
    drawn apart (each side's rounds on its own) spread over the load's whole range."""
    loads = [1.0, 1.6, 0.8, 2.0, 1.2]
    rounds = [scaling_round(600 / load, 500 / load, [2.5 * load] * throughput.DISPATCH_EACH) for load in loads]

    assert throughput.dispatch_figure(rounds) == pytest.approx(0.75)
    whole = spread.of_rounds(rounds, throughput.dispatch_figure)
    assert whole == pytest.approx((0.75, 0.75))
    apart = spread.interval(
        [found.two.rate for found in rounds], [2 / statistics.median(found.settled) for found in rounds], paired=False
    )
    assert apart.low < 0.6 and apart.high > 1.0, apart


@pytest.mark.parametrize(("cost", "decided_miss"), [(0.6, True), (1.0, False)])
def test_a_cost_in_every_round_reads_as_a_decided_miss_and_none_does_not(cost: float, decided_miss: bool) -> None:
    """Five rounds with 10 % of noise on each rate and dispatch sample (seeded): the 2 workers at 0.9x of 2 ÷ the
    dispatch median read an interval above 0.8x or across it; at 0.54x of it (a cost in every run), wholly below: a
    decided miss, however widened for five rounds."""
    rng = random.Random(3)
    rounds = [
        scaling_round(
            cost * 0.9 * 800 * rng.gauss(1, 0.1),
            450 * rng.gauss(1, 0.1),
            [2.5 * rng.gauss(1, 0.1) for _ in range(throughput.DISPATCH_EACH)],
        )
        for _ in range(5)
    ]
    found = throughput.judged_intervals(rounds, 2, spread.level(3, 5))["dispatch"]

    assert (found.high < 0.8) is decided_miss, found
    assert found.low < throughput.dispatch_figure(rounds) < found.high


def decided_either_way(widen: bool, asked: int, cap: int, figures: int = 200) -> tuple[float, float]:
    """Of ``figures`` figures whose true value is their target's own (0.8), each round's value with 10 % of noise
    around it (seeded), looked at as the benchmarks do (``asked`` rounds, then one more while undecided, ``cap`` at
    most, at the shared level): the share decided a miss, and the share decided met."""
    rng = random.Random(5)
    drawn_at, low, high = spread.level(asked, cap), 0, 0
    for _ in range(figures):
        rounds: list[float] = []
        #: each interval drawn, by the rounds it was drawn from: the verdict's after the look that decided is that
        #: look's own (the same rounds, the same seeded draws), not drawn again
        looked: dict[int, spread.Interval] = {}

        def drawn(rounds: list[float] = rounds, looked: dict[int, spread.Interval] = looked) -> spread.Interval:
            if len(rounds) not in looked:
                of = spread.of_few_rounds if widen else spread.of_rounds
                looked[len(rounds)] = of(rounds, statistics.median, drawn_at)
            return looked[len(rounds)]

        def one_round(_: int, rounds: list[float] = rounds) -> None:
            rounds.append(0.8 * rng.gauss(1, 0.1))

        def decided(drawn: Callable[[], spread.Interval] = drawn) -> bool:
            return spread.decides(drawn(), 0.8)

        spread.take_rounds(asked, cap, one_round, decided)
        found = drawn()
        low, high = low + (found.high < 0.8), high + (found.low >= 0.8)
    return low / figures, high / figures


def test_three_to_five_rounds_are_widened_so_that_a_figure_at_its_target_is_rarely_decided_either_way() -> None:
    """The throughput figures' rounds: 3 asked, 5 at most. The percentile interval alone decides a figure at its
    target's own value either way in ~10 % of the figures a side, four times the level's 2.5 %; widened
    (:func:`benchmarks.spread.widening`), in 2.5-4.5 % (the median of so few values is coarser than the mean the
    widening is drawn for: at most the level's share at 5 rounds asked and 8 at most, the status figure's)."""
    one_side = (1 - spread.LEVEL) / 2
    plain = decided_either_way(widen=False, asked=3, cap=5)
    assert min(plain) > 2 * one_side, ("the simulation no longer shows what the widening is for", plain)
    assert max(decided_either_way(widen=True, asked=3, cap=5)) <= 0.05


def test_five_to_eight_pairs_widened_decide_a_figure_at_its_target_no_more_often_than_the_level_says() -> None:
    """The status figure with a recycle: ``--repeats`` pairs (5), 8 at most."""
    assert max(decided_either_way(widen=True, asked=5, cap=8)) <= (1 - spread.LEVEL) / 2


@pytest.mark.parametrize(
    ("p", "freedom", "quantile"), [(0.975, 2, 4.303), (0.975, 4, 2.776), (0.995, 4, 4.604), (0.975, 30, 2.042)]
)
def test_students_t_quantiles_are_those_of_the_tables(p: float, freedom: int, quantile: float) -> None:
    assert spread.student_t(p, freedom) == pytest.approx(quantile, abs=5e-4)


def test_the_widening_fades_as_the_rounds_grow() -> None:
    """~3.9x at 3 rounds and the throughput figure's level (98.33 %), toward 1 with many."""
    drawn_at = spread.level(3, 5)
    assert spread.widening(3, drawn_at) == pytest.approx(3.91, abs=0.01)
    assert spread.widening(5, drawn_at) > spread.widening(8, drawn_at) > spread.widening(100, drawn_at) > 1
    assert spread.widening(100, drawn_at) < 1.05
    with pytest.raises(ValueError):
        spread.widening(1, drawn_at)


def test_a_ratios_widened_interval_stays_above_0() -> None:
    """Three rounds far apart, widened ~3.9x at 98.33 %: the ends move as a ratio's (its logarithm's distance from the
    figure multiplied), never below 0, where a difference's would (round 62's first widening read -0.225-0.552)."""
    found = spread.of_few_rounds([0.2, 0.5, 0.9], statistics.median, spread.level(3, 5))
    assert 0 < found.low < 0.2 and found.high > 0.9, found


def test_the_linear_figure_draws_each_1_worker_batch_with_its_round() -> None:
    """The ~linear baseline is twice the 1 worker's median rate (below what the cores allow at 3 ms of CPU a run:
    666/s): with each round's two batches moved alike by the load, every resample reads the figure's own ratio."""
    loads = [1.0, 1.5, 0.9]
    rounds = [scaling_round(540 / load, 300 / load, [3.0] * throughput.DISPATCH_EACH) for load in loads]

    assert throughput.linear_figure(rounds, cores=2) == pytest.approx(0.9)
    assert spread.of_rounds(rounds, lambda drawn: throughput.linear_figure(drawn, cores=2)) == pytest.approx((0.9, 0.9))


def test_the_recycle_figures_pairs_are_drawn_whole() -> None:
    """The figure with a recycle is the median of each pair's ratio (with over without): a pair moved whole by the
    load leaves the interval at the ratio itself."""
    pairs = [(0.8 * rate, rate) for rate in (4000.0, 5500.0, 3000.0, 6000.0, 5000.0)]

    assert ratio_median(pairs) == pytest.approx(0.8)
    assert spread.of_rounds(pairs, ratio_median) == pytest.approx((0.8, 0.8))
    assert spread.of_rounds(pairs, ratio_median, seed=1) == spread.of_rounds(pairs, ratio_median, seed=1)


@pytest.mark.parametrize(("decided", "taken"), [(True, 3), (False, 5)])
def test_the_throughput_benchmark_adds_rounds_until_its_intervals_decide_within_the_cap(
    monkeypatch: pytest.MonkeyPatch, decided: bool, taken: int
) -> None:
    """At ``--repeats`` 5, three rounds asked (the six batches of before), then one more while either judged figure's
    interval does not decide its target, five at most (:func:`benchmarks.spread.round_cap`); the intervals drawn at
    the level shared by the looks (:func:`benchmarks.spread.level`)."""
    levels: list[float] = []

    def judged(rounds: list[throughput.Round], cores: int, level: float) -> dict[str, spread.Interval]:
        levels.append(level)
        return {"dispatch": spread.Interval(0.85, 0.9) if decided else spread.Interval(0.7, 0.9)}

    monkeypatch.setattr(throughput, "measured", lambda cluster, workers, slots, first, count: batch(slots, 100.0))
    monkeypatch.setattr(throughput, "through_service", lambda cluster, n: (0.0, 0.0, 0.003, 0.0))
    monkeypatch.setattr(throughput, "idle_cpu", lambda cluster: 0.0)
    monkeypatch.setattr(throughput, "settle", lambda cluster, idle: None)
    monkeypatch.setattr(throughput, "first_runs", lambda registry, first, count: [False] * count)
    monkeypatch.setattr(throughput, "judged_intervals", judged)
    rounds, drawn_at = throughput.scaling_rounds(
        cast(Cluster, RoundsCluster()), cast(subprocess.Popen[bytes], 2), 4, 5, 2
    )

    assert len(rounds) == taken
    assert drawn_at == spread.level(3, 5) == pytest.approx(1 - 0.05 / 3)
    assert set(levels) == {drawn_at} and len(levels) == taken - 3 + (1 if decided else 0)
