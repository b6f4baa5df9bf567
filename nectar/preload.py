"""Pre-load strategies (starlake's four): what a schedule's fire or a trigger's claim checks before queueing its run.

    Schedule("0 3 * * *", fire_time_param="date", preload={
        "strategy": "ack", "ack_path": "s3://bucket/pending/sales/{date}.ack", "ack_wait_timeout": 3600})

- ``none`` (or no ``preload``): the run is queued as always.
- ``pending``: an object under ``area`` (matching ``glob``) → the run; none → the fire is skipped, saying so.
- ``imported``: objects under ``area`` → the run of ``import_task`` is queued first and the fire's run WAITING for
  it (woken when it is DONE, failed if it fails, as the wait loop does); none → skipped.
- ``ack``: the file at ``ack_path`` → the run; absent → the run waits for it (WAITING, holding no worker) until the
  fire time + ``ack_wait_timeout``, then ends skipped or FAILED (``on_timeout``).

``area`` and ``ack_path`` are ``str.format`` templates of the fire time (:data:`TEMPLATE_FIELDS`, the local time
``fire_time_param`` receives). Every bad option is :class:`InvalidParameters` naming ``preload.<option>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nectar.errors import InvalidParameters, InvalidTask, NectarError, StoreUnavailable
from nectar.schedules.times import Offset, fire_value, is_time_parameter, zone_of

if TYPE_CHECKING:
    from nectar.catalog.model import TaskInfo
    from nectar.registry.model import Run
    from nectar.registry.schedules import FireOutcome
    from nectar.service import Nectar

STRATEGIES = ("none", "imported", "pending", "ack")
#: the options each strategy takes (besides ``strategy``)
OPTIONS = {
    "none": (),
    "pending": ("area", "glob"),
    "imported": ("area", "glob", "import_task", "import_params", "ack_wait_timeout", "on_timeout"),
    "ack": ("ack_path", "ack_wait_timeout", "on_timeout"),
}
#: what a wait that timed out becomes: its fire skipped (the run CANCELLED), or the run FAILED
ON_TIMEOUT = ("skip", "fail")
#: starlake's default wait for an ack file (or, here, an import run): one hour
DEFAULT_WAIT_S = 3600.0
#: the longest wait a strategy may ask for, in seconds (a year)
MAX_WAIT_S = 366 * 86_400.0
#: the fields a path template may use, each a part of the fire time in its schedule's time zone
TEMPLATE_FIELDS = ("date", "datetime", "year", "month", "day", "hour", "minute")
#: a local folder's errors that mean "nothing there yet" (a templated folder not made yet), not a failure
_ABSENT = frozenset({"FileNotFoundError", "NotADirectoryError"})


def template_fields(moment: datetime) -> dict[str, str]:
    """The values of :data:`TEMPLATE_FIELDS` for a (local, naive) time: ``2026-06-01``, ``2026-06-01T03:00:00``, …"""
    return {
        "date": moment.strftime("%Y-%m-%d"),
        "datetime": moment.replace(microsecond=0).isoformat(),
        "year": f"{moment.year:04d}",
        "month": f"{moment.month:02d}",
        "day": f"{moment.day:02d}",
        "hour": f"{moment.hour:02d}",
        "minute": f"{moment.minute:02d}",
    }


def fill(template: str, values: Mapping[str, str], name: str) -> str:
    """``template`` with the fire time's fields filled in; :class:`InvalidParameters` naming ``name`` if it uses an
    unknown field or its braces do not parse."""
    known = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise InvalidParameters({name: [f"unknown field {{{exc.args[0]}}} in {template!r}: use {known}"]}) from None
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        raise InvalidParameters({name: [f"{template!r} is not a template of {known}: {exc}"]}) from None


@dataclass(frozen=True)
class Moment:
    """The time a strategy is applied for: a schedule's fire time (moved by its ``fire_time_offset``, in its zone,
    for templates) or a trigger's claim time (UTC). Its wait's deadline counts from ``time``."""

    time: float
    timezone: str = "UTC"
    offset: Offset | None = None
    #: the schedule's ``fire_time_param``: an import task with a parameter of that name gets the fire time too
    param: str | None = None

    def fields(self) -> dict[str, str]:
        moved = self.offset.apply(self.time, self.timezone) if self.offset is not None else self.time
        return template_fields(datetime.fromtimestamp(moved, zone_of(self.timezone)).replace(tzinfo=None))

    def values_for(self, info: TaskInfo) -> dict[str, Any]:
        found = next((p for p in info.params if p.name == self.param), None)
        if found is None or not is_time_parameter(found.param):
            return {}
        return {found.name: fire_value(found.param, self.time, self.timezone, self.offset)}


def _wait(values: Mapping[str, Any], errors: dict[str, list[str]]) -> float:
    wait = values.get("ack_wait_timeout", DEFAULT_WAIT_S)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= MAX_WAIT_S:
        errors["preload.ack_wait_timeout"] = [
            f"must be a number of seconds above 0, at most {MAX_WAIT_S:.0f} (a year), not {wait!r}"
        ]
        return DEFAULT_WAIT_S
    return float(wait)


def _names_a_folder(path: str) -> bool:
    if path.startswith("s3://"):
        key = path[len("s3://") :].partition("/")[2]
        return not key or key.endswith("/")
    return path.endswith(os.sep)


def _path(values: Mapping[str, Any], name: str, errors: dict[str, list[str]], sample: Mapping[str, str]) -> str:
    """The template ``name`` checked on a sample fire time: an ``s3://`` prefix or an absolute path."""
    text = values.get(name)
    field_name = f"preload.{name}"
    if not isinstance(text, str) or not text:
        errors[field_name] = ["missing: give s3://bucket/… or an absolute path (a template of the fire time)"]
        return ""
    from nectar.stores.listing import Location  # see _stores

    try:
        filled = fill(text, sample, field_name)
        Location.parse(filled, field_name)
        if name == "ack_path" and _names_a_folder(filled):
            errors[field_name] = [f"{text!r} names a folder, not a file"]
    except InvalidParameters as exc:
        errors.update(exc.errors)
    return text


@dataclass(frozen=True)
class Preload:
    """A strategy and its options, checked (see the module)."""

    strategy: str
    area: str | None = None
    glob: str | None = None
    import_task: str | None = None
    import_params: Mapping[str, Any] = field(default_factory=dict)
    ack_path: str | None = None
    ack_wait_timeout: float = DEFAULT_WAIT_S
    on_timeout: str = "skip"

    @classmethod
    def from_definition(cls, values: Any) -> Preload | None:
        """The ``preload`` object read (None for none, or when absent); :class:`InvalidParameters` names each bad
        option as ``preload.<option>``."""
        if values is None:
            return None
        if not isinstance(values, Mapping):
            raise InvalidParameters({"preload": [f"must be an object with a strategy ({', '.join(STRATEGIES)})"]})
        strategy = values.get("strategy")
        if strategy not in STRATEGIES:
            raise InvalidParameters({"preload.strategy": [f"must be one of {', '.join(STRATEGIES)}, not {strategy!r}"]})
        allowed = OPTIONS[strategy]
        errors: dict[str, list[str]] = {
            f"preload.{name}": [f"not an option of {strategy} ({', '.join(allowed) or 'it has none'})"]
            for name in sorted(set(values) - {"strategy", *allowed})
        }
        sample = template_fields(datetime(2026, 1, 31, 3, 4, 5))
        found: dict[str, Any] = {"strategy": strategy}
        if "area" in allowed:
            found["area"] = _path(values, "area", errors, sample)
            glob = values.get("glob")
            if glob is not None and not isinstance(glob, str):
                errors["preload.glob"] = ["must be a glob such as *.csv"]
            elif glob is not None:
                from nectar.stores.listing import compile_glob  # see _stores

                try:
                    compile_glob(glob, "preload.glob")
                except InvalidParameters as exc:
                    errors.update(exc.errors)
            found["glob"] = glob
        if "ack_path" in allowed:
            found["ack_path"] = _path(values, "ack_path", errors, sample)
        if "import_task" in allowed:
            task = values.get("import_task")
            if not isinstance(task, str) or task.count("/") != 2 or not all(task.split("/")):
                errors["preload.import_task"] = [f"must name a task as <type>/<chain>/<Task>, not {task!r}"]
            params = values.get("import_params") or {}
            if not isinstance(params, Mapping):
                errors["preload.import_params"] = ["must be an object of the import task's fixed parameters"]
            found.update(import_task=task, import_params=dict(params) if isinstance(params, Mapping) else {})
        if "ack_wait_timeout" in allowed:
            found["ack_wait_timeout"] = _wait(values, errors)
            on_timeout = values.get("on_timeout", "skip")
            if on_timeout not in ON_TIMEOUT:
                errors["preload.on_timeout"] = [f"must be one of {', '.join(ON_TIMEOUT)}, not {on_timeout!r}"]
            found["on_timeout"] = on_timeout
        if errors:
            raise InvalidParameters(errors)
        return None if strategy == "none" else cls(**found)

    def definition(self) -> dict[str, Any]:
        """The JSON object, as ``preload`` takes it (its defaults written out)."""
        every = {
            "area": self.area,
            "glob": self.glob,
            "import_task": self.import_task,
            "import_params": dict(self.import_params),
            "ack_path": self.ack_path,
            "ack_wait_timeout": self.ack_wait_timeout,
            "on_timeout": self.on_timeout,
        }
        return {"strategy": self.strategy, **{name: every[name] for name in OPTIONS[self.strategy]}}

    @property
    def import_ref(self) -> tuple[str, str, str]:
        chain_type, chain, task = str(self.import_task).split("/")
        return chain_type, chain, task

    def check_import(self, nectar: Nectar, moment: Moment) -> None:
        """Raise :class:`InvalidParameters` naming ``preload.import_task`` or ``preload.import_params.<name>`` if the
        import task is unknown or cannot take its parameters (checked by making it for ``moment``)."""
        if self.import_task is None:
            return
        try:
            info = nectar.task(*self.import_ref)
            info.instantiate({**self.import_params, **moment.values_for(info)})
        except InvalidParameters as exc:
            field_of = {
                name: "preload.import_params" if name.startswith("_") else f"preload.import_params.{name}"
                for name in exc.errors
            }
            raise InvalidParameters({field_of[name]: msgs for name, msgs in exc.errors.items()}) from None
        except NectarError as exc:
            raise InvalidParameters({"preload.import_task": [str(exc)]}) from None

    def outcome(self, nectar: Nectar, run: Run, moment: Moment, now: float) -> FireOutcome:
        """What a fire whose task makes ``run`` becomes under this strategy: the run, a skip saying why, the run
        WAITING (for the ack file, or for the import run queued ``first``).

        :raises NectarError: a store cannot say now whether the files are there (the fire is tried again later).
        """
        from nectar.registry.schedules import FireOutcome  # the registry imports the specs that import this module

        values = moment.fields()
        if self.strategy == "ack":
            uri = fill(str(self.ack_path), values, "preload.ack_path")
            there = self._ack_there(uri)
            if isinstance(there, str):
                return FireOutcome(skip=there)
            if there:
                return FireOutcome(run=run)
            return FireOutcome(run=self._waiting(run, uri, moment, now, f"waits for its ack file {uri}"))
        area = fill(str(self.area), values, "preload.area")
        missing = self._empty(area)
        if missing is not None:
            return FireOutcome(skip=missing)
        if self.strategy == "pending":
            return FireOutcome(run=run)
        return self._imported(nectar, run, moment, now)

    def _ack_there(self, uri: str) -> bool | str:
        """Whether the ack file is there; a skip's reason if its store answers that it never can be (no bucket)."""
        from nectar.stores.listing import exists  # see _stores
        from nectar.stores.s3 import PERMANENT_S3_ERRORS

        try:
            return exists(uri, "preload.ack_path")
        except StoreUnavailable as exc:
            if exc.code in PERMANENT_S3_ERRORS:
                return f"ack: cannot check {uri}: {exc}"
            raise

    def _empty(self, area: str) -> str | None:
        """None if an object lies under ``area`` (matching the glob), else the skip's reason."""
        from nectar.stores.listing import Location, list_objects  # see _stores
        from nectar.stores.s3 import PERMANENT_S3_ERRORS

        matching = f" matching {self.glob}" if self.glob else ""
        try:
            location = Location.parse(area, "preload.area")
            if next(iter(list_objects(location, self.glob, limit=1)), None) is not None:
                return None
        except StoreUnavailable as exc:
            if exc.code in PERMANENT_S3_ERRORS:
                return f"{self.strategy}: cannot list {area}: {exc}"
            if exc.code not in _ABSENT:
                raise
        return f"{self.strategy}: no file under {area}{matching}"

    def _imported(self, nectar: Nectar, run: Run, moment: Moment, now: float) -> FireOutcome:
        from nectar.registry.schedules import FireOutcome

        try:
            info = nectar.task_to_fire(*self.import_ref)
            instance = info.instantiate({**self.import_params, **moment.values_for(info)})
        except NectarError as exc:
            return FireOutcome(skip=f"imported: cannot make the import task {self.import_task}: {exc}")
        except Exception as exc:  # the task's own code raised making it: as luigi would fail to schedule it
            why = f"{type(exc).__name__}: {exc}"
            return FireOutcome(skip=f"imported: cannot make the import task {self.import_task}: {why}")
        try:
            first = nectar.new_run(
                info,
                instance,
                schedule_id=run.schedule_id,
                fire_time=run.fire_time,
                trigger_id=run.trigger_id,
                objects=run.objects,
            )
        except InvalidTask as exc:  # its class's own retry policy: its code must change, not a fire tried again
            return FireOutcome(skip=f"imported: cannot make the import task {self.import_task}: {exc}")
        if first is None:  # its output is there: nothing left to import
            return FireOutcome(run=run)
        reason = f"waits for its import run {first.id} ({self.import_task})"
        return FireOutcome(run=self._waiting(run, f"run:{first.id}", moment, now, reason), first=first)

    def _waiting(self, run: Run, item: str, moment: Moment, now: float, reason: str) -> Run:
        from nectar.registry.model import RunState

        return replace(
            run,
            state=RunState.WAITING,
            waiting_for=(item,),
            wait_until=moment.time + self.ack_wait_timeout,
            on_wait_timeout=self.on_timeout,
            waiting_since=min(now, moment.time),  # a late fire (a catch-up) has waited since its fire time
            not_before=now,
            error=reason,
        )
