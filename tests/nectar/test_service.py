"""The retry policy a submission records: the task's own attributes, else the settings'."""

from __future__ import annotations

import luigi

from nectar import NectarTask
from nectar.config import Settings
from nectar.registry import RetryPolicy
from nectar.service import retry_policy

SETTINGS = Settings(retries=2, retry_delay=5.0, retry_backoff=2.0)


class Plain(luigi.Task):
    pass


class Patient(NectarTask):
    retries = 5
    retry_delay = 0.5


class Fragile(NectarTask):
    retries = 0


class NamedLikeAPolicy(luigi.Task):
    retries = luigi.IntParameter(default=9)  # a parameter, not a policy: ignored


def test_a_task_without_a_policy_gets_the_settings() -> None:
    assert retry_policy(Plain, SETTINGS) == RetryPolicy(2, 5.0, 2.0)
    assert retry_policy(NamedLikeAPolicy, SETTINGS) == RetryPolicy(2, 5.0, 2.0)


def test_a_task_attribute_wins_field_by_field() -> None:
    assert retry_policy(Patient, SETTINGS) == RetryPolicy(5, 0.5, 2.0)
    assert retry_policy(Fragile, SETTINGS) == RetryPolicy(0, 5.0, 2.0)


def test_the_delay_grows_by_the_backoff() -> None:
    policy = RetryPolicy(3, 2.0, 3.0)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [2.0, 6.0, 18.0]
