"""A task class's own luigi ``retry_count`` gives a run as many attempts as luigi's scheduler gives the task before it
disables it (``num_failures() >= retry_count``), for every value luigi has an answer for; one it has none for (never
reached: ``inf``, ``nan``; not comparable with a count: a text; past the registry's INTEGER) is refused, naming the
class and the attribute. Before, 0, -1, 2.5, ``True`` and a text were ignored silently (the settings' retries
taken), and a ``retries`` written as a ``@property`` was refused, naming the property object."""

from __future__ import annotations

import math

import luigi
import luigi.scheduler
import pytest

from nectar.config import Settings
from nectar.errors import InvalidTask
from nectar.service import retry_policy

#: failures after which a task luigi has not disabled is taken as never disabled
LUIGIS_PATIENCE = 50


def disabled_after(retry_count: object) -> int | None:
    """The failures after which luigi's own scheduler disables a task whose ``retry_count`` is ``retry_count`` (as
        its worker hands it: the task's ``retry_policy_dict``, first as it schedules the task, then with each failure it
    reports), None if not within :data:`LUIGIS_PATIENCE`."""
    scheduler = luigi.scheduler.Scheduler(disable_window=3600, disable_hard_timeout=10**9)
    policy = {"retry_count": retry_count, "disable_hard_timeout": None, "disable_window": None}
    scheduler.add_task(worker="w", task_id="T", status="PENDING", retry_policy_dict=policy)  # scheduled, then run
    for failures in range(1, LUIGIS_PATIENCE + 1):
        scheduler.add_task(worker="w", task_id="T", status="FAILED", retry_policy_dict=policy)
        if scheduler.task_list("DISABLED", ""):
            return failures
    return None


def counting(value: object, by_property: bool = False) -> luigi.Task:
    """A task whose ``retry_count`` is ``value``: a class attribute, or a property."""
    if by_property:
        return type("Counting", (luigi.Task,), {"retry_count": property(lambda self: value)})()
    return type("Counting", (luigi.Task,), {"retry_count": value})()


@pytest.mark.parametrize("by_property", [False, True])
@pytest.mark.parametrize("value", [0, -1, -2.5, 1, 2, 2.5, 3.0, 0.1, True, False, 7])
def test_a_retry_count_gives_the_attempts_luigi_gives(settings: Settings, value: object, by_property: bool) -> None:
    attempts = disabled_after(value)
    assert attempts is not None
    assert isinstance(value, (int, float))
    assert attempts == max(1, math.ceil(value))  # luigi's answer, as read here

    # the settings' retries (the fixture's 0) unlike any here: a value ignored shows
    assert retry_policy(counting(value, by_property), settings.replace(retries=20)).retries == attempts - 1


@pytest.mark.parametrize(
    ("value", "luigi_says"),
    [(math.inf, None), (math.nan, None), ("3", TypeError), (2**40, "past the registry's INTEGER")],
)
def test_a_retry_count_luigi_has_no_answer_for_is_refused_naming_the_class(
    settings: Settings, value: object, luigi_says: object
) -> None:
    if luigi_says is None:  # never disabled: retried for ever
        assert disabled_after(value) is None
    elif luigi_says is TypeError:  # luigid's comparison fails: the task's FAILED report raises in luigid
        with pytest.raises(TypeError):
            disabled_after(value)
    with pytest.raises(InvalidTask) as refused:
        retry_policy(counting(value), settings, "etl/counting_chain/Counting")
    rule = "task class etl/counting_chain/Counting's retry_count must be a whole number from 1 to 2147483647"
    assert str(refused.value) == f"{rule}, not {value!r}"


class RetriesByProperty(luigi.Task):
    @property
    def retries(self) -> int:
        return 1


def test_retries_written_as_a_property_is_read_on_the_task() -> None:
    assert retry_policy(RetriesByProperty(), Settings(retries=4).resolved()).retries == 1
