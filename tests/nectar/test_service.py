"""The retry policy a submission records: the task's own attributes, else the settings'; what a submission makes
once (a plain task's key) and how it tells a task done."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import luigi
import pytest
from luigi.task import flatten

import nectar.catalog.asked
import nectar.catalog.model
import nectar.service
from nectar import NectarTask
from nectar.config import Settings
from nectar.keys import TargetKey, task_key
from nectar.registry import RetryPolicy
from nectar.service import Nectar, retry_policy


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


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


SUBMITTED_CHAIN = '''
import luigi

from nectar import NectarTask


class PlainTask(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"{self.n}.never")


class KeyedTask(NectarTask):
    n = luigi.IntParameter()


class PairTask(NectarTask):
    """Two outputs: done only when both exist."""

    n = luigi.IntParameter()

    def output(self):
        return [self.store.target(self.target_key), self.target_for("second.txt")]
'''


@pytest.fixture
def submitted(settings: Settings, write_chain: Callable[[str, str], Path]) -> Iterator[Nectar]:
    write_chain("svc/submitted_chain", SUBMITTED_CHAIN)
    with Nectar(settings) as nectar:
        yield nectar


def test_a_plain_tasks_key_is_made_once_per_submission(submitted: Nectar, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain luigi task's key is not kept on it: made twice, it serialized and hashed its parameters twice."""
    made: list[luigi.Task] = []

    def counted(chain_type: str, chain: str, task: luigi.Task) -> TargetKey:
        made.append(task)
        return task_key(chain_type, chain, task)

    monkeypatch.setattr(nectar.catalog.model, "task_key", counted)

    submission = submitted.submit("svc", "submitted_chain", "PlainTask", {"n": "1"})

    assert submission.created and submission.run is not None
    (task,) = made
    assert submission.run.key == submission.key.path == task_key("svc", "submitted_chain", task).path


def test_a_nectar_tasks_one_output_is_looked_at_without_flatten(
    submitted: Nectar, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NectarTask's own output() is one target: luigi's flatten saw it by raising and catching a TypeError."""
    flattened: list[Any] = []

    def counted(struct: Any) -> list[Any]:
        flattened.append(struct)
        return list(flatten(struct))

    monkeypatch.setattr(nectar.catalog.asked, "flatten", counted)  # where luigi's complete() is asked (cwdlock)

    queued = submitted.submit("svc", "submitted_chain", "KeyedTask", {"n": "1"})
    write_text(settings.local_targets_dir / queued.key.path, "made\n")
    done = submitted.submit("svc", "submitted_chain", "KeyedTask", {"n": "1"})

    assert queued.created and not queued.done and done.done
    assert flattened == []


def test_a_nectar_task_with_outputs_of_its_own_is_done_when_each_exists(submitted: Nectar, settings: Settings) -> None:
    first = submitted.submit("svc", "submitted_chain", "PairTask", {"n": "1"})
    write_text(settings.local_targets_dir / first.key.path, "made\n")  # one of its two outputs

    again = submitted.submit("svc", "submitted_chain", "PairTask", {"n": "1"})
    assert again == dataclasses.replace(first, created=False)  # not done: the same run, active
    write_text(settings.local_targets_dir / first.key.with_file("second.txt").path, "made\n")
    assert submitted.submit("svc", "submitted_chain", "PairTask", {"n": "1"}).done
