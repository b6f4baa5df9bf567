"""A schedule: which task runs when, with which parameters, and what happens to late or overlapping fires.

:class:`ScheduleSpec` is the definition, the same whether it comes from a chain file or from
``POST /api/schedules``; :meth:`ScheduleSpec.from_definition` reads the JSON fields and names each bad
one (:class:`~nectar.errors.InvalidParameters`, a 422 in the API). :class:`Schedule` is a definition
with its identity and state as the registry keeps them; :class:`Fire` one fire time and what became
of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nectar.errors import InvalidParameters
from nectar.preload import Preload
from nectar.schedules.times import InvalidTiming, Offset, Timing, parse_offset

CATCHUP = ("none", "latest", "all")
OVERLAP = ("allow", "skip", "queue")
SOURCES = ("api", "file")
#: what a fire time can become: a run queued (or the active run of its key), its output already there, skipped
#: with a reason, or held until a run of its schedule ends (``overlap: queue``, ``max_active``, a backfill)
FIRE_STATES = ("queued", "done", "skipped", "held")
#: a fire up to this late is on time; later it was missed and ``catchup`` decides
DEFAULT_MISFIRE_GRACE = 60.0
#: the longest span a schedule's numbers may give, in seconds (100 years: any longer one overflows the calendar)
MAX_SPAN_S = 36_600 * 86_400
#: the most active runs a schedule may allow (a bound the registry's integers hold)
MAX_ACTIVE = 1_000_000
#: the definition's fields, in the order they are shown
FIELDS = (
    "task",
    "cron",
    "interval_s",
    "timezone",
    "params",
    "fire_time_param",
    "fire_time_offset",
    "catchup",
    "overlap",
    "max_active",
    "misfire_grace_s",
    "starting_deadline_s",
    "preload",
)


def _number(name: str, value: Any, minimum: float, maximum: float, integer: bool = False) -> float | None:
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not minimum <= value <= maximum:  # NaN: never
        what = "an integer" if integer else "a number"
        raise InvalidParameters({name: [f"must be {what} from {minimum:g} to {maximum:g}, not {value!r}"]})
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        raise InvalidParameters({name: [f"must be one of {', '.join(choices)}, not {value!r}"]})
    return str(value)


@dataclass(frozen=True)
class ScheduleSpec:
    """When a task runs and with what; validated field by field, the task itself checked by the catalog."""

    task: str
    timing: Timing
    params: Mapping[str, Any] = field(default_factory=dict)
    #: a date or time parameter of the task that receives each fire time (after ``offset``)
    fire_time_param: str | None = None
    offset: Offset | None = None
    catchup: str = "latest"
    overlap: str = "allow"
    max_active: int | None = None
    misfire_grace_s: float = DEFAULT_MISFIRE_GRACE
    #: a fire not queued this many seconds after its time is skipped, whatever the catch-up (None: never)
    starting_deadline_s: float | None = None
    #: what a fire checks before its run is queued (:mod:`nectar.preload`; None: nothing)
    preload: Preload | None = None

    @property
    def ref(self) -> tuple[str, str, str]:
        chain_type, chain, task = self.task.split("/")
        return chain_type, chain, task

    @property
    def cap(self) -> int | None:
        """How many runs of the schedule may be active at once: ``max_active``, else 1 when overlaps are
        skipped or queued, else no bound."""
        if self.max_active is not None:
            return self.max_active
        return 1 if self.overlap in ("skip", "queue") else None

    @property
    def on_cap(self) -> str:
        """What a fire does when the cap is reached: ``skip`` it, or ``hold`` it until a run ends."""
        return "skip" if self.overlap == "skip" else "hold"

    def definition(self) -> dict[str, Any]:
        """The JSON fields, as ``POST /api/schedules`` takes them."""
        return {
            "task": self.task,
            "cron": self.timing.cron,
            "interval_s": self.timing.interval_s,
            "timezone": self.timing.timezone,
            "params": dict(self.params),
            "fire_time_param": self.fire_time_param,
            "fire_time_offset": self.offset.text if self.offset else None,
            "catchup": self.catchup,
            "overlap": self.overlap,
            "max_active": self.max_active,
            "misfire_grace_s": self.misfire_grace_s,
            "starting_deadline_s": self.starting_deadline_s,
            "preload": self.preload.definition() if self.preload is not None else None,
        }

    def text(self) -> str:
        """The definition as canonical JSON (what the registry stores and compares)."""
        return json.dumps(self.definition(), sort_keys=True)

    @classmethod
    def from_definition(cls, values: Mapping[str, Any]) -> ScheduleSpec:
        """Read the JSON fields (unknown ones refused); :class:`InvalidParameters` names every bad field."""
        errors: dict[str, list[str]] = {}
        unknown = sorted(set(values) - set(FIELDS) - {"paused", "start"})
        for name in unknown:
            errors[name] = ["unknown field"]
        task = values.get("task")
        if not isinstance(task, str) or task.count("/") != 2 or not all(task.split("/")):
            errors["task"] = [f"must name a task as <type>/<chain>/<Task>, not {task!r}"]
        params = values.get("params")
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            errors["params"] = ["must be an object of the task's fixed parameters"]
        try:
            timing = Timing.parse(values.get("cron"), values.get("interval_s"), values.get("timezone") or "UTC")
        except InvalidTiming as exc:
            errors[exc.field] = [str(exc)]
        interval = values.get("interval_s")
        if "interval_s" not in errors and isinstance(interval, int) and interval > MAX_SPAN_S:
            errors["interval_s"] = [f"must be at most {MAX_SPAN_S} seconds (100 years), not {interval}"]
        offset_text = values.get("fire_time_offset")
        offset = None
        try:
            offset = parse_offset(offset_text) if offset_text is not None else None
        except InvalidTiming as exc:
            errors[exc.field] = [str(exc)]
        fire_param = values.get("fire_time_param")
        if fire_param is not None and not isinstance(fire_param, str):
            errors["fire_time_param"] = ["must be the name of a date or time parameter of the task"]
        elif offset is not None and fire_param is None:
            errors["fire_time_offset"] = ["only with fire_time_param: it moves the fire time that parameter receives"]
        numbers: dict[str, float | None] = {}
        for name, minimum, maximum, integer in (
            ("max_active", 1, MAX_ACTIVE, True),
            ("misfire_grace_s", 0, MAX_SPAN_S, False),
            ("starting_deadline_s", 0, MAX_SPAN_S, False),
        ):
            try:
                numbers[name] = _number(name, values.get(name), minimum, maximum, integer)
            except InvalidParameters as exc:
                errors.update(exc.errors)
        choices = {}
        for name, allowed, default in (("catchup", CATCHUP, "latest"), ("overlap", OVERLAP, "allow")):
            try:
                choices[name] = _choice(name, values.get(name), allowed, default)
            except InvalidParameters as exc:
                errors.update(exc.errors)
        preload = None
        try:
            preload = Preload.from_definition(values.get("preload"))
        except InvalidParameters as exc:
            errors.update(exc.errors)
        if errors:
            raise InvalidParameters(errors)
        grace = numbers["misfire_grace_s"]
        max_active = numbers["max_active"]
        return cls(
            task=str(task),
            timing=timing,
            params=dict(params),
            fire_time_param=fire_param,
            offset=offset,
            catchup=choices["catchup"],
            overlap=choices["overlap"],
            max_active=int(max_active) if max_active is not None else None,
            misfire_grace_s=float(DEFAULT_MISFIRE_GRACE if grace is None else grace),
            starting_deadline_s=numbers["starting_deadline_s"],
            preload=preload,
        )


@dataclass(frozen=True)
class ScheduleRecord:
    """A schedule as the registry keeps it: its definition, where it comes from, and how far it has fired."""

    id: str
    source: str
    spec: ScheduleSpec
    #: bumped at each change of the definition: a fire is made by exactly one version
    version: int
    paused: bool
    #: the latest fire time dealt with (fired, skipped or held); the next fire comes after it
    cursor: float
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Fire:
    """One fire time of a schedule and what became of it."""

    schedule_id: str
    fire_time: float
    #: one of :data:`FIRE_STATES`
    state: str
    run_id: str | None
    reason: str | None
    version: int
    recorded_at: float
    #: when its run was queued (None while held, or when no run was made)
    queued_at: float | None = None
    backfill_id: str | None = None

    @property
    def lag(self) -> float | None:
        """Seconds from the fire time to its run's queueing (None if no run was queued for it)."""
        return None if self.queued_at is None else self.queued_at - self.fire_time


def moves(rows: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """Where the rows of file schedules named by their place (``<type>.<chain>.<Task>.<index>``) go when their task's
    list was edited: ``rows`` and ``wanted`` map an id to its stored and its declared definition. A schedule is the
    same as long as its definition is (its cron or interval, zone, parameters, policies): a row whose definition is
    declared now at another place of the same task, where nothing of that definition was, moves there (the same
    definition twice: matched in their order). A row whose definition changed in place stays (an edit keeps its
    state); one whose place and definition both changed cannot be told from a new one."""

    def task(sid: str) -> str:
        return sid.rsplit(".", 1)[0]

    def placed(sid: str) -> bool:  # a place in a list (``<task>.<index>``); a named one (or an id of no dot) is not
        _, dot, index = sid.rpartition(".")
        return bool(dot) and index.isdigit()

    # rows not where their definition is declared now, and places whose declared definition has no row there
    loose = [sid for sid, text in rows.items() if placed(sid) and wanted.get(sid) != text]
    open_places = [sid for sid, text in wanted.items() if placed(sid) and rows.get(sid) != text]
    moving: dict[str, str] = {}
    for place in open_places:
        found = next(
            (sid for sid in loose if sid not in moving and task(sid) == task(place) and rows[sid] == wanted[place]),
            None,
        )
        if found is not None:
            moving[found] = place
    return moving
