"""Schedules declared in a chain file, on the task they run, and the checks every schedule passes against its task.

    class DailySalesTask(NectarTask):
        schedules = [Schedule("0 3 * * *", timezone="Europe/Paris", fire_time_param="date", fire_time_offset="-P1D")]
        date = luigi.DateParameter()

A task's ``schedules`` (one :class:`Schedule` or a list) is read when the catalog imports the file;
a schedule that does not fit its task is listed beside the chain (``schedule_errors``) and the rest
of the file works as before. A file schedule's id is ``<type>.<chain>.<Task>.<name>`` (its ``name``,
else its place in the list), so its pause and its history survive edits of its definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nectar.declarations import Declaration, Declared, declarations
from nectar.errors import InvalidParameters
from nectar.schedules.model import ScheduleSpec
from nectar.schedules.times import fire_value, is_time_parameter

if TYPE_CHECKING:
    from nectar.catalog.model import TaskInfo


class Schedule(Declaration):
    """When a task runs, declared in its chain file (the fields of ``POST /api/schedules``, but the task)."""

    def __init__(self, cron: str | None = None, *, name: str | None = None, **fields: Any) -> None:
        super().__init__(name=name, **({"cron": cron, **fields} if cron is not None else fields))


def sample_values(spec: ScheduleSpec, info: TaskInfo, fire_time: float) -> dict[str, Any]:
    """The task's wire values for one fire: the fixed ones and the fire time's."""
    values = dict(spec.params)
    if spec.fire_time_param is not None:
        param = next(p for p in info.params if p.name == spec.fire_time_param)
        values[spec.fire_time_param] = fire_value(param.param, fire_time, spec.timing.timezone, spec.offset)
    return values


def check_spec(spec: ScheduleSpec, info: TaskInfo) -> None:
    """Raise :class:`InvalidParameters` naming each field of ``spec`` its task cannot take (a fixed parameter
    ``params.<name>``, ``fire_time_param``), checked by making the task of its next fire."""
    if spec.fire_time_param is not None:
        param = next((p for p in info.params if p.name == spec.fire_time_param), None)
        if param is None:
            known = ", ".join(p.name for p in info.params) or "none"
            raise InvalidParameters(
                {"fire_time_param": [f"{info.name} has no parameter {spec.fire_time_param} ({known})"]}
            )
        if not is_time_parameter(param.param):
            raise InvalidParameters(
                {"fire_time_param": [f"{spec.fire_time_param} is a {param.kind} parameter, not a date or time one"]}
            )
        if spec.fire_time_param in spec.params:
            raise InvalidParameters({f"params.{spec.fire_time_param}": ["is the fire_time_param: each fire sets it"]})
    try:
        info.instantiate(sample_values(spec, info, spec.timing.next_after(0)))
    except InvalidParameters as exc:

        def field(name: str) -> str:  # a missing one is a missing fixed parameter
            if name.startswith("_"):
                return "params"
            return "fire_time_param" if name == spec.fire_time_param else f"params.{name}"

        raise InvalidParameters({field(name): msgs for name, msgs in exc.errors.items()}) from None


def declared_on(info: TaskInfo) -> tuple[list[Declared[ScheduleSpec]], list[str]]:
    """The schedules a task declares, and a message for each that is wrong (naming the task and the field)."""

    def build(fields: dict[str, Any]) -> ScheduleSpec:
        spec = ScheduleSpec.from_definition(fields)
        check_spec(spec, info)
        return spec

    return declarations(info, "schedules", Schedule, build)
