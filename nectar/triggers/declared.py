"""Triggers declared in a chain file, on the task they run, and the checks every trigger passes against its task.

    class LoadSales(luigi.Task):
        triggers = [Trigger("s3://landing/sales/", glob="*.csv", param="path")]
        path = luigi.Parameter()

A task's ``triggers`` (one :class:`Trigger` or a list) is read when the catalog imports the file; a
trigger that does not fit its task is listed beside the chain (``trigger_errors``) and the rest of
the file works as before. A file trigger's id is ``<type>.<chain>.<Task>.<name or place>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nectar.declarations import Declaration, Declared, declarations
from nectar.errors import InvalidParameters
from nectar.triggers.model import TriggerSpec

if TYPE_CHECKING:
    from nectar.catalog.model import TaskInfo

#: the kinds of parameter that take a batch of objects (a list of their URIs)
LIST_KINDS = ("list", "tuple")


class Trigger(Declaration):
    """A run of a task for each object that lands under ``prefix``, declared in its chain file (the fields of
    ``POST /api/triggers``, but the task)."""

    def __init__(self, prefix: str | None = None, *, name: str | None = None, **fields: Any) -> None:
        super().__init__(name=name, **({"prefix": prefix, **fields} if prefix is not None else fields))


def trigger_values(spec: TriggerSpec, uris: Sequence[str]) -> dict[str, Any]:
    """The task's wire values for some objects: the fixed ones, and the objects' URIs (a list in batch mode)."""
    return {**spec.params, spec.param: list(uris) if spec.batch_size is not None else uris[0]}


def check_trigger(spec: TriggerSpec, info: TaskInfo) -> None:
    """Raise :class:`InvalidParameters` naming each field of ``spec`` its task cannot take (``param``, a fixed
    parameter ``params.<name>``, ``batch_size`` without a list parameter), checked by making the task for an object."""
    param = next((p for p in info.params if p.name == spec.param), None)
    if param is None:
        known = ", ".join(p.name for p in info.params) or "none"
        raise InvalidParameters({"param": [f"{info.name} has no parameter {spec.param} ({known})"]})
    if spec.batch_size is not None and param.kind not in LIST_KINDS:
        raise InvalidParameters(
            {"batch_size": [f"{spec.param} is a {param.kind} parameter: a batch needs a list parameter"]}
        )
    if spec.batch_size is None and param.kind in LIST_KINDS:
        raise InvalidParameters({"param": [f"{spec.param} is a {param.kind} parameter: give batch_size too"]})
    try:
        info.instantiate(trigger_values(spec, [spec.location.uri("sample.csv")]))
    except InvalidParameters as exc:

        def field(name: str) -> str:  # a missing one is a missing fixed parameter
            if name.startswith("_"):
                return "params"
            return "param" if name == spec.param else f"params.{name}"

        raise InvalidParameters({field(name): msgs for name, msgs in exc.errors.items()}) from None


def declared_triggers(info: TaskInfo) -> tuple[list[Declared[TriggerSpec]], list[str]]:
    """The triggers a task declares, and a message for each that is wrong (naming the task and the field)."""

    def build(fields: dict[str, Any]) -> TriggerSpec:
        spec = TriggerSpec.from_definition(fields)
        check_trigger(spec, info)
        return spec

    return declarations(info, "triggers", Trigger, build)
