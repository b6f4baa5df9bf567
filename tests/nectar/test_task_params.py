"""NectarTask's parameters: luigi's list in luigi's order, read once per class, read again when the class changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import luigi
import luigi.task
import luigi.util
import pytest

from nectar import NectarTask


class Base(NectarTask):
    b = luigi.IntParameter()
    a = luigi.Parameter(default="x")


class Child(Base):
    c = luigi.DateParameter()


def luigis(cls: type[luigi.Task]) -> list[tuple[str, luigi.Parameter]]:
    """The parameters as luigi's own get_params lists them."""
    return list(luigi.Task.get_params.__func__(cls))  # type: ignore[attr-defined]


def test_the_parameters_are_luigis_in_its_order() -> None:
    for cls in (Base, Child):
        assert cls.get_params() == luigis(cls)
        assert cls.get_params() == luigis(cls)  # kept, the same


def test_the_parameters_are_read_once_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    Child(b=0, c=dt.date(2026, 1, 1))  # type: ignore[call-arg]  # (luigi notes _unconsumed_params on the class)
    walked: list[Any] = []

    def counting_dir(obj: Any) -> list[str]:
        walked.append(obj)
        return dir(obj)

    monkeypatch.setattr(luigi.task, "dir", counting_dir, raising=False)  # what luigi's get_params walks

    task = Child(b=1, c=dt.date(2026, 6, 1))  # type: ignore[call-arg]
    task.to_str_params()

    assert walked == []
    assert task.param_kwargs == {"b": 1, "a": "x", "c": dt.date(2026, 6, 1)}


def test_a_new_classs_first_task_reads_its_parameters_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain module is executed anew for each run: its classes are new, and making a new class's first task read
    its parameters once, not once more for each attribute luigi (or the class) set on it on the way."""
    walked: list[Any] = []

    def counting_dir(obj: Any) -> list[str]:
        walked.append(obj)
        return dir(obj)

    monkeypatch.setattr(luigi.task, "dir", counting_dir, raising=False)  # what luigi's get_params walks

    class Fresh(NectarTask):
        b = luigi.IntParameter()

    Fresh.from_str_params({"b": "1"})
    Fresh.from_str_params({"b": "2"})
    assert walked == [Fresh]


def test_a_parameter_added_to_a_class_already_made_is_seen() -> None:
    class Source(luigi.Task):
        extra = luigi.IntParameter(default=3)

    class Made(NectarTask):
        b = luigi.IntParameter()

    assert [name for name, _ in Made.get_params()] == ["b"]
    luigi.util.inherits(Source)(Made)  # sets Source's parameters on Made
    assert sorted(name for name, _ in Made.get_params()) == ["b", "extra"]
    assert Made.get_params() == luigis(Made)


def test_a_tasks_repr_is_luigis_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """luigi's worker logs a step's repr several times (running, done, its checks); a made task's is kept."""
    task = Child(b=2, c=dt.date(2026, 6, 2))  # type: ignore[call-arg]
    shown = repr(task)
    assert shown == luigi.Task.__repr__(task) and shown.endswith("Child(b=2, a=x, c=2026-06-02)")
    walked: list[Any] = []

    def counting(cls: type, *args: Any) -> Any:
        walked.append(args)
        return luigi.Task.get_param_values.__func__(cls, *args)  # type: ignore[attr-defined]

    monkeypatch.setattr(Child, "get_param_values", classmethod(counting))  # what luigi's __repr__ walks

    assert repr(task) == shown and str(task) == shown
    assert walked == []
