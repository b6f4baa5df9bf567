"""What a :class:`~nectar.service.Nectar` makes once (its registry, its luigid client, its schedule and trigger books)
is made once when several threads ask for it at once, as an app's first requests do. From Python 3.12 on
``functools.cached_property`` holds no lock while it makes its value: on 3.13 each thread that asked made one, all but
the last dropped (these tests fail there with ``cached_property``; on 3.11 its lock kept them whole)."""

from __future__ import annotations

import functools

import pytest

from nectar.config import Settings
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.helpers.threads import released_together

#: threads asking at once, and how many fresh Nectars they ask (a making shorter than a switch may not interleave)
THREADS, ROUNDS = 8, 20


@pytest.mark.parametrize("name", ["runs", "scheduler", "schedules", "triggers"])
def test_what_a_nectar_makes_once_is_one_for_threads_that_ask_at_once(settings: Settings, name: str) -> None:
    settings = settings.replace(scheduler_url="http://127.0.0.1:1")  # a client is made; none of these calls luigid
    for _ in range(ROUNDS):
        nectar = closed_at_end(Nectar(settings))
        made = released_together([functools.partial(getattr, nectar, name)] * THREADS)
        assert {id(value) for value in made} == {id(getattr(nectar, name))}
