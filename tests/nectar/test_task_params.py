"""NectarTask's parameters: luigi's list in luigi's order, read once per class, read again when the class changes."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable
from typing import Any

import luigi
import luigi.task
import luigi.util
import pytest

import nectar.task
from nectar import NectarTask
from nectar.keys import task_key
from nectar.luigi_internals import task_params


class Base(NectarTask):
    b: int = luigi.IntParameter()
    a: str = luigi.Parameter(default="x")


class Child(Base):
    c: dt.date = luigi.DateParameter()


def function_of(method: Callable[..., Any]) -> Callable[..., Any]:
    """The function of a task class's classmethod (read from the class: a method bound to it), to call for another
    class: luigi's ``Task``'s own, whatever NectarTask makes of it."""
    assert isinstance(method, types.MethodType), method
    return method.__func__


def luigis(cls: type[luigi.Task]) -> list[tuple[str, luigi.Parameter]]:
    """The parameters as luigi's own get_params lists them."""
    return list(function_of(luigi.Task.get_params)(cls))


def test_the_parameters_are_luigis_in_its_order() -> None:
    for cls in (Base, Child):
        assert cls.get_params() == luigis(cls)
        assert cls.get_params() == luigis(cls)  # kept, the same


def test_the_parameters_are_read_once_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    Child(b=0, c=dt.date(2026, 1, 1))  # (luigi notes _unconsumed_params on the class)
    walked: list[Any] = []

    def counting_dir(obj: Any) -> list[str]:
        walked.append(obj)
        return dir(obj)

    monkeypatch.setattr(luigi.task, "dir", counting_dir, raising=False)  # what luigi's get_params walks

    task = Child(b=1, c=dt.date(2026, 6, 1))
    task.to_str_params()

    assert walked == []
    assert task.param_kwargs == {"b": 1, "a": "x", "c": dt.date(2026, 6, 1)}


def test_a_new_classs_first_task_reads_its_parameters_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain module is executed anew for each run: its classes are new, and making a new class's first task read
    its parameters once, not once more for each attribute luigi (or the class) set on it on the way (read as luigi's
    get_params reads them, without its walk of dir: :func:`~nectar.luigi_internals.task_params`)."""
    walked: list[Any] = []

    def counted(cls: Any) -> list[tuple[str, luigi.Parameter]]:
        walked.append(cls)
        return task_params(cls)

    monkeypatch.setattr(nectar.task, "task_params", counted)

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


def luigis_batch(cls: type[luigi.Task]) -> list[str]:
    """The parameters that batch, as luigi's own batch_param_names lists them."""
    return list(function_of(luigi.Task.batch_param_names)(cls))


def test_the_parameters_that_batch_are_luigis_and_seen_when_one_is_added() -> None:
    class Batched(NectarTask):
        b: int = luigi.IntParameter(batch_method=max)
        a: str = luigi.Parameter(default="x")

    class Plain(NectarTask):
        b: int = luigi.IntParameter()

    assert (Batched.batch_param_names(), Plain.batch_param_names()) == (["b"], [])
    assert (Batched(b=1).batchable, Plain(b=1).batchable) == (True, False)
    Plain.day = luigi.DateParameter(batch_method=max)  # a class already made, a batching parameter added
    for cls in (Batched, Plain):
        assert cls.batch_param_names() == luigis_batch(cls), cls
    assert Plain.batch_param_names() == ["day"]


class Source(luigi.Task):
    """Parameters made in a class (luigi names each as its class is made), to set on a class already made, as
    ``luigi.util.inherits`` sets them."""

    day: dt.date = luigi.DateParameter()
    new: int = luigi.IntParameter()


def test_a_parameter_replaced_on_a_class_already_made_is_seen() -> None:
    class Dated(NectarTask):
        day = luigi.Parameter()

    assert Dated.get_params() == luigis(Dated)  # kept
    Dated.day = vars(Source)["day"]  # in place: the class's dict holds as many names as before

    assert Dated.get_params() == luigis(Dated)
    assert Dated.from_str_params({"day": "2026-06-01"}).day == dt.date(2026, 6, 1)


def test_a_parameter_set_in_place_on_a_base_is_seen_by_the_classes_made_of_it_before_and_after() -> None:
    class Based(NectarTask):
        day: Any = None  # no parameter yet: what Based gives the classes made of it is kept without it

    class Before(Based):
        pass

    assert Before.get_params() == luigis(Before)  # kept, with what Based gives the classes made of it
    Based.day = vars(Source)["day"]

    class After(Based):
        pass

    for cls in (Based, Before, After):
        assert cls.get_params() == luigis(cls), cls


def test_a_parameter_deleted_and_another_added_in_its_place_is_seen() -> None:
    class Swapped(NectarTask):
        old = luigi.Parameter()

    assert [name for name, _ in Swapped.get_params()] == ["old"]
    delattr(Swapped, "old")
    Swapped.new = vars(Source)["new"]  # as many names as before

    assert Swapped.get_params() == luigis(Swapped)


def test_a_namespace_replaced_on_a_class_already_made_is_seen() -> None:
    class Moved(NectarTask):
        task_namespace = "here"
        b: int = luigi.IntParameter()

    assert Moved.get_task_family() == "here.Moved"
    Moved.task_namespace = "there"

    assert Moved.get_task_family() == "there.Moved"


def test_a_tasks_repr_is_luigis_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """luigi's worker logs a step's repr several times (running, done, its checks); a made task's is kept."""
    task = Child(b=2, c=dt.date(2026, 6, 2))
    shown = repr(task)
    assert shown == luigi.Task.__repr__(task) and shown.endswith("Child(b=2, a=x, c=2026-06-02)")
    walked: list[Any] = []

    def counting(cls: type, *args: Any) -> Any:
        walked.append(args)
        return function_of(luigi.Task.get_param_values)(cls, *args)

    monkeypatch.setattr(Child, "get_param_values", classmethod(counting))  # what luigi's __repr__ walks

    assert repr(task) == shown and str(task) == shown
    assert walked == []


#: each value a Counted parameter serialized
serialized: list[Any] = []


class CountedInt(luigi.IntParameter):
    def serialize(self, x: Any) -> str:
        serialized.append(x)
        return str(super().serialize(x))


class Plain(NectarTask):
    n: int = CountedInt()
    m: int = CountedInt(default=2)


class Mixed(NectarTask):
    n: int = CountedInt()
    note: str = luigi.Parameter(default="", significant=False)
    hidden: str = luigi.Parameter(default="h", visibility=luigi.parameter.ParameterVisibility.HIDDEN)
    secret: str = luigi.Parameter(default="s", visibility=luigi.parameter.ParameterVisibility.PRIVATE)


VARIANTS = [(False, False), (True, False), (False, True), (True, True)]


def test_a_tasks_parameters_are_serialized_once_for_its_id_its_key_and_its_run() -> None:
    """A submission asks for them three times (luigi's task_id, the key's MD5, the run's record)."""
    serialized.clear()
    task = Plain(n=7)
    key = task_key("t", "c_chain", task)
    recorded = task.to_str_params()

    assert serialized == [7, 2]
    assert recorded == {"n": "7", "m": "2"} and key == task_key("t", "c_chain", Plain(n=7))
    recorded["n"] = "8"  # a caller's copy: the task's own stay
    assert task.to_str_params(only_significant=True, only_public=True) == {"n": "7", "m": "2"}


@pytest.mark.parametrize(("only_significant", "only_public"), VARIANTS)
def test_each_variant_of_a_tasks_parameters_is_luigis(only_significant: bool, only_public: bool) -> None:
    for task in (Plain(n=1), Mixed(n=1, note="x", hidden="y", secret="z")):
        for _ in range(2):  # made, then kept
            assert task.to_str_params(only_significant, only_public) == luigi.Task.to_str_params(
                task, only_significant, only_public
            )


def test_parameters_set_anew_are_serialized_anew() -> None:
    task = Plain(n=1)
    task.param_kwargs = {"n": 3, "m": 4}
    assert task.to_str_params() == {"n": "3", "m": "4"}


def test_a_classs_family_is_luigis_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """luigi's get_task_family asks for the namespace twice, and each task made asks for its family twice."""
    assert Child.get_task_family() == function_of(luigi.Task.get_task_family)(Child)
    asked: list[type] = []
    namespace = function_of(NectarTask.get_task_namespace)

    def counting(cls: type[NectarTask]) -> str:
        asked.append(cls)
        return str(namespace(cls))

    monkeypatch.setattr(NectarTask, "get_task_namespace", classmethod(counting))  # (NectarTask's shape is the same)

    Child(b=3, c=dt.date(2026, 6, 3))
    Child(b=4, c=dt.date(2026, 6, 4))

    assert asked == []


def test_a_namespace_set_on_a_class_already_made_is_seen() -> None:
    class Renamed(NectarTask):
        b: int = luigi.IntParameter()

    before = Renamed.get_task_family()
    Renamed.task_namespace = "elsewhere"

    assert Renamed.get_task_family() == "elsewhere.Renamed" != before
    assert Renamed.get_task_family() == function_of(luigi.Task.get_task_family)(Renamed)
    assert Renamed(b=1).task_id.startswith("elsewhere.Renamed_")
