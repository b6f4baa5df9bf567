"""A figure's verdict looked at by a schedule set in advance: more rounds at most, at the same shared level."""

from __future__ import annotations

import benchmarks.spread as spread


def test_four_looks_reach_18_rounds_at_the_level_of_5_to_8_a_round_at_a_time() -> None:
    looks = spread.scheduled_looks(5)
    assert looks == (5, 8, 12, 18)
    assert spread.looks_level(len(looks)) == spread.level(5, spread.round_cap(5)) == 1 - 0.05 / 4


def test_each_scheduled_look_is_later_than_the_last_even_for_few_rounds() -> None:
    assert spread.scheduled_looks(1) == (1, 2, 3, 5)
    assert spread.scheduled_looks(3, looks=3) == (3, 5, 8)


def test_the_verdict_is_asked_only_at_the_scheduled_rounds_and_the_first_that_decides_ends_them() -> None:
    taken: list[int] = []
    asked: list[int] = []

    def decided() -> bool:
        asked.append(len(taken))
        return len(taken) >= 12

    rounds = spread.take_rounds(5, 18, taken.append, decided, spread.scheduled_looks(5))
    assert (rounds, asked, taken) == (12, [5, 8, 12], list(range(12)))


def test_an_undecided_figure_takes_the_schedules_cap() -> None:
    taken: list[int] = []
    looks = spread.scheduled_looks(5)
    assert spread.take_rounds(5, looks[-1], taken.append, lambda: False, looks) == 18 == len(taken)
