"""When a schedule fires: cron and interval timings in a time zone, fire-time offsets, fire times as parameter values.

Every time here is unix seconds (a float, UTC); a zone appears only at the edges (:meth:`Timing.iso`,
:func:`fire_value`, :meth:`Offset.apply`) and inside the cron walk.

**Interval** (``interval_s``): the fire times are the multiples of ``interval_s`` since 1970-01-01T00:00:00Z,
whatever the zone (every 900 s fires at :00, :15, :30 and :45 UTC): pure arithmetic, no drift.

**Cron** (5 fields: minute hour day-of-month month day-of-week, with the names, ``L``, ``W`` and ``#`` that
croniter accepts, and its ``@hourly``/``@daily``/... aliases; 6 or 7 fields, ``@reboot`` and the random
``R`` are refused). croniter walks the expression on naive local wall-clock time in the zone (its own zone
handling is not used); each wall-clock match is then mapped to UTC:

- a wall time that does not exist (clocks spring forward: 02:30 in Europe/Paris on 2026-03-29) fires at the
  first instant after the gap (03:00 CEST = 01:00 UTC), and every match inside one gap collapses into that
  one instant: a daily 02:30 job runs once that day; a ``*/15`` job fires 01:45 CET then 03:00 CEST;
- a wall time that happens twice (clocks fall back: 01:30 in America/New_York on 2026-11-01) fires once, at
  its first occurrence, unless the hour field is a wildcard (starts with ``*``: ``*/15 * * * *``,
  ``0 * * * *``): then it fires in both passes, so "every 15 minutes" stays every 15 real minutes (Vixie
  cron's rule: fixed-time jobs run once, wildcard jobs run normally). An hourly job fires 25 times that day;
- day-of-month and day-of-week are croniter's default: when both are restricted a day matching either fires
  (``0 0 1 * 1``: the 1st and every Monday), as Vixie cron does; unlike Vixie, a field written ``*/2`` counts
  as restricted (Vixie intersects the two when either field starts with ``*``);
- fire times always come from the expression, never from "last fire + interval".

:meth:`Timing.next_after` and :meth:`Timing.last_at_or_before` call croniter once when no UTC-offset change
lies within 3 h of ``t`` and of the match found (offsets compared at both ends, at ``t``, and every 6 days
between), and at most twice more near one change (found by bisection, to the second): matches before it map
with the old offset, one in the gap to its end, those after it with the new offset, less a repeated hour's
wall times unless the hour field is a wildcard. A window holding two changes (a yearly cron seen from months
away) walks every wall match from ``wall(t) - Δ`` (Δ the change seen). This assumes two changes of one zone
lie more than 6 days apart and that one change moves the clock by at most 3 h.

An :class:`Offset` (``fire_time_offset``, an ISO 8601 duration) moves a fire time before it becomes a
parameter value: years, months, weeks and days move the local date in the zone, keeping the wall clock
(``-P1D`` from 03:00 Paris is 03:00 Paris the day before, across a DST change; a wall clock that does not
exist that day moves to the end of the gap, one that happens twice takes its first occurrence); hours,
minutes and seconds then move elapsed time. :func:`fire_value` renders the result, as local wall time in the
zone, through the parameter's own ``normalize`` and ``serialize``.
"""

from __future__ import annotations

import calendar
import copy
import math
import re
import types
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    import luigi

#: how far a UTC-offset change is looked for around a cron fire (the largest clock change assumed)
NEAR = 3 * 3600.0
#: offsets are also compared this often over a long span: two changes of one zone lie further apart
PROBE_EVERY = 6 * 86400.0
#: how far back :meth:`Timing.last_at_or_before` looks for a cron fire
LOOKBACK = 366 * 86400.0
#: characters of a refused name or expression an error message repeats
SHOWN = 80
#: the longest fire-time offset (any of its parts), about 100 years
MAX_OFFSET_DAYS = 36600
_RANDOM = re.compile(r"(?<![a-z])r(?![a-z])", re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1)


class InvalidTiming(ValueError):
    """A schedule's timing or offset is wrong; ``field`` is the JSON field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@cache
def croniter_module() -> types.ModuleType:
    """croniter, imported when a process first reads a cron expression: its import costs ~30 ms and a
    subprocess (``platform.architecture()`` runs ``file`` on the interpreter), which a process that never
    reads one (luigid's guard, an API or a worker with no cron schedule) does not pay at its start."""
    import croniter

    return croniter


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or :class:`InvalidTiming` on ``timezone``."""
    if not isinstance(name, str) or not name:
        raise InvalidTiming("timezone", f"expected an IANA time zone name such as 'Europe/Paris', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # OSError: a folder ("Europe"), a name too long
        raise InvalidTiming(
            "timezone", f"unknown time zone {_shown(name)} (an IANA name such as 'Europe/Paris')"
        ) from error


def _shown(value: object) -> str:
    """``value`` as an error message repeats it: its repr, a string cut to :data:`SHOWN` characters."""
    return repr(value[:SHOWN] if isinstance(value, str) else value)


def _naive(wall: float) -> datetime:
    return _EPOCH + timedelta(seconds=wall)


def _first_change(zone: ZoneInfo, before: float, after: float) -> float:
    """The first instant in ``(before, after]`` whose UTC offset differs from ``before``'s (to the second)."""
    low, high = math.floor(before), math.ceil(after)
    offset = datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return float(high)


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: a 5-field ``cron`` or every ``interval_s`` seconds, in ``timezone``."""

    cron: str | None = None
    interval_s: int | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        self.zone  # noqa: B018 - the zone is checked first, as a bad zone makes any cron meaningless
        if (self.cron is None) == (self.interval_s is None):
            both = self.cron is not None
            raise InvalidTiming(
                "interval_s" if both else "cron",
                f"give exactly one of cron and interval_s, not {'both' if both else 'neither'}",
            )
        if self.interval_s is not None:
            if isinstance(self.interval_s, bool) or not isinstance(self.interval_s, int) or self.interval_s < 1:
                raise InvalidTiming(
                    "interval_s", f"expected a whole number of seconds, at least 1; got {self.interval_s!r}"
                )
        else:
            self.walker  # noqa: B018 - parsed now so that a bad cron fails here

    @classmethod
    def parse(cls, cron: str | None, interval_s: int | None, timezone: str | None = "UTC") -> Timing:
        """A checked timing; :class:`InvalidTiming` names the field at fault."""
        return cls(cron=cron, interval_s=interval_s, timezone="UTC" if timezone is None else timezone)

    @cached_property
    def zone(self) -> ZoneInfo:
        """The zone the cron's wall-clock times and :meth:`iso` are in."""
        return zone_of(self.timezone)

    @cached_property
    def walker(self) -> Any:
        """croniter over naive wall-clock seconds (a template: each walk copies it, as croniter keeps a cursor)."""
        text = self.cron
        if not isinstance(text, str):
            raise InvalidTiming("cron", f"expected a 5-field cron expression as a string, got {_shown(text)}")
        fields = text.split()
        if fields[:1] == ["@reboot"]:
            raise InvalidTiming("cron", "@reboot names no time; give a 5-field cron expression")
        if not text.lstrip().startswith("@") and len(fields) != 5:
            raise InvalidTiming(
                "cron",
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}: {_shown(text)}",
            )
        if _RANDOM.search(text):
            raise InvalidTiming(
                "cron", f"random fields (R) are not allowed, fire times must be reproducible: {_shown(text)}"
            )
        cron = croniter_module()
        try:
            walker = cron.croniter(text, 0.0)
            walker.get_next(float, start_time=0.0)
        except cron.CroniterBadDateError as error:
            raise InvalidTiming("cron", f"{_shown(text)} never fires ({error})") from error
        except (cron.CroniterError, ValueError, TypeError) as error:
            raise InvalidTiming("cron", str(error)) from error
        return walker

    @cached_property
    def wildcard_hour(self) -> bool:
        """Whether the hour field starts with ``*``: such a job fires in both passes of a repeated hour."""
        return bool(self.cron is not None and self.walker.expressions[1].startswith("*"))

    def _offset(self, t: float) -> float:
        offset = datetime.fromtimestamp(t, self.zone).utcoffset()
        return offset.total_seconds() if offset is not None else 0.0

    def _offsets_over(self, start: float, end: float) -> set[float]:
        """The UTC offsets seen at ``start``, ``end`` and every :data:`PROBE_EVERY` between."""
        probes = [start, end] + [start + k * PROBE_EVERY for k in range(1, int((end - start) // PROBE_EVERY) + 1)]
        return {self._offset(probe) for probe in probes}

    def _instants(self, wall: float) -> list[float]:
        """The UTC instants at which the wall-clock match ``wall`` fires: one, or two in a wildcard hour's fold."""
        naive = _naive(wall)
        first = naive.replace(tzinfo=self.zone).timestamp()
        second = naive.replace(tzinfo=self.zone, fold=1).timestamp()
        if first == second:
            return [first]
        if first > second:  # in a gap: fold=0 reads it with the offset before the change, landing after it
            return [_first_change(self.zone, second, first)]
        return [first, second] if self.wildcard_hour else [first]

    def next_after(self, t: float) -> float:
        """The first fire time strictly after ``t``."""
        t = math.floor(t)  # fire times are whole seconds; croniter would round a fraction up past a fire
        if self.interval_s is not None:
            return float((t // self.interval_s + 1) * self.interval_s)
        walker = copy.copy(self.walker)
        offset = self._offset(t)
        match = walker.get_next(float, start_time=t + offset)
        offsets = self._offsets_over(t - NEAR, match - offset + NEAR) | {offset}
        if len(offsets) == 1:
            return float(match - offset)
        near_change = self._next_across_change(t, match - offset + NEAR)
        if near_change is not None:
            return near_change
        margin = max(offsets) - min(offsets)
        best: float | None = None
        cursor = t + offset - margin - 1
        while best is None or cursor <= best + self._offset(best) + margin:
            cursor = walker.get_next(float, start_time=cursor)
            for instant in self._instants(cursor):
                if instant > t and (best is None or instant < best):
                    best = instant
        assert best is not None
        return best

    def _next_across_change(self, t: float, end: float) -> float | None:
        """:meth:`next_after` when one UTC-offset change lies in ``[t - NEAR, end]``: two croniter calls at most.

        Before the change, wall matches map with the old offset; a match inside a gap fires at the change; after
        it they map with the new offset, less a repeated hour's walls unless the hour field is a wildcard.
        ``None`` when the window holds more than one change (the caller walks every match instead).
        """
        start = t - NEAR
        before, after = self._offset(start), self._offset(end)
        if before == after:
            return None
        change = _first_change(self.zone, start, end)
        if self._offsets_over(start, change - 1) != {before} or self._offsets_over(change, end) != {after}:
            return None
        walker = copy.copy(self.walker)
        if t < change:
            match = walker.get_next(float, start_time=t + before)
            if match - before < change:
                return float(match - before)
            if after > before and match < change + after:
                return change
            if after < before and self.wildcard_hour:
                match = walker.get_next(float, start_time=change + after - 1)
        else:
            match = walker.get_next(float, start_time=t + after)
            if after < before and not self.wildcard_hour and match < change + before:
                match = walker.get_next(float, start_time=change + before - 1)
        fire = float(match - after)
        return fire if fire <= end or self._offsets_over(change, fire) == {after} else None

    def last_at_or_before(self, t: float) -> float | None:
        """The latest fire time at or before ``t`` (``None`` if a cron fired in none of the year before)."""
        t = math.floor(t)  # fire times are whole seconds
        if self.interval_s is not None:
            return float(math.floor(t) // self.interval_s * self.interval_s)
        try:
            last = self._last_fire(t)
        except croniter_module().CroniterBadDateError:  # no match in croniter's 50 years back
            return None
        return None if last is None or last < t - LOOKBACK else last

    def _last_fire(self, t: float) -> float | None:
        walker = copy.copy(self.walker)
        offset = self._offset(t)
        match = walker.get_prev(float, start_time=math.floor(t + offset) + 1)
        offsets = self._offsets_over(match - offset - NEAR, t + NEAR) | {offset}
        if len(offsets) == 1:
            return float(match - offset)
        near_change = self._last_across_change(t, match - offset - NEAR)
        if near_change is not None:
            return near_change
        margin = max(offsets) - min(offsets)
        best: float | None = None
        cursor = math.floor(t + offset + margin) + 1
        while best is None or cursor >= best + self._offset(best) - margin:
            if cursor < t + offset - LOOKBACK:
                return best
            cursor = walker.get_prev(float, start_time=cursor)
            for instant in self._instants(cursor):
                if instant <= t and (best is None or instant > best):
                    best = instant
        return best

    def _last_across_change(self, t: float, start: float) -> float | None:
        """:meth:`last_at_or_before` when one UTC-offset change lies in ``[start, t + NEAR]``, as
        :meth:`_next_across_change` does forward; ``None`` when the window holds more than one change."""
        end = t + NEAR
        before, after = self._offset(start), self._offset(end)
        if before == after:
            return None
        change = _first_change(self.zone, start, end)
        if self._offsets_over(start, change - 1) != {before} or self._offsets_over(change, end) != {after}:
            return None
        walker = copy.copy(self.walker)
        if t >= change:
            match = walker.get_prev(float, start_time=math.floor(t + after) + 1)
            shadowed = after < before and not self.wildcard_hour and match < change + before
            if match >= change + after and not shadowed:
                return float(match - after)
            match = walker.get_prev(float, start_time=change + max(before, after))
            if after > before and match >= change + before:
                return change
        else:
            match = walker.get_prev(float, start_time=math.floor(t + before) + 1)
        fire = float(match - before)
        return fire if fire >= start or self._offsets_over(fire, change - 1) == {before} else None

    def fires_between(self, start: float, end: float, limit: int | None = None) -> list[float]:
        """The fire times ``f`` with ``start < f <= end``, ascending: the first ``limit`` of them if given."""
        fires: list[float] = []
        fire = self.next_after(start)
        while fire <= end and (limit is None or len(fires) < limit):
            fires.append(fire)
            fire = self.next_after(fire)
        return fires

    def next_fires(self, after: float, count: int = 5) -> list[float]:
        """The next ``count`` fire times after ``after``."""
        fires: list[float] = []
        fire = after
        for _ in range(count):
            fire = self.next_after(fire)
            fires.append(fire)
        return fires

    def iso(self, t: float) -> str:
        """``t`` in ISO 8601 with this zone's offset, to the second: ``2026-03-29T03:00:00+02:00``."""
        return datetime.fromtimestamp(t, self.zone).isoformat(timespec="seconds")


_DURATION = re.compile(
    r"(?P<sign>[-+])?P(?!$)(?:(?P<years>[-+]?\d+)Y)?(?:(?P<months>[-+]?\d+)M)?(?:(?P<weeks>[-+]?\d+)W)?"
    r"(?:(?P<days>[-+]?\d+)D)?(?:T(?!$)(?:(?P<hours>[-+]?\d+)H)?(?:(?P<minutes>[-+]?\d+)M)?"
    r"(?:(?P<seconds>[-+]?\d+(?:[.,]\d+)?)S)?)?"
)


@dataclass(frozen=True)
class Offset:
    """A signed ISO 8601 duration added to a fire time: ``-P1D``, ``PT-1H``, ``P1Y2M3W4DT5H6M7S``.

    A leading ``-`` negates the whole; each part may carry its own sign too (``P-1DT12H``).
    """

    text: str
    months: int = field(init=False)
    days: int = field(init=False)
    seconds: float = field(init=False)

    def __post_init__(self) -> None:
        found = _DURATION.fullmatch(self.text.strip()) if isinstance(self.text, str) else None
        if found is None:
            raise InvalidTiming(
                "fire_time_offset",
                f"expected an ISO 8601 duration such as '-P1D' or 'PT-1H', got {_shown(self.text)}",
            )
        sign = -1 if found["sign"] == "-" else 1

        def part(name: str) -> int:
            return sign * int(found[name] or 0)

        object.__setattr__(self, "months", part("years") * 12 + part("months"))
        object.__setattr__(self, "days", part("weeks") * 7 + part("days"))
        seconds = float((found["seconds"] or "0").replace(",", "."))
        object.__setattr__(self, "seconds", part("hours") * 3600.0 + part("minutes") * 60.0 + sign * seconds)
        if (
            abs(self.months) > MAX_OFFSET_DAYS // 30
            or abs(self.days) > MAX_OFFSET_DAYS
            or abs(self.seconds) > MAX_OFFSET_DAYS * 86400
        ):
            raise InvalidTiming("fire_time_offset", f"{_shown(self.text)} is longer than {MAX_OFFSET_DAYS} days")

    def apply(self, t: float, timezone: str) -> float:
        """``t`` moved by this offset: the calendar parts on the local date in ``timezone``, then elapsed time."""
        if self.months or self.days:
            zone = zone_of(timezone)
            local = datetime.fromtimestamp(t, zone)
            year, month = divmod(local.month - 1 + self.months, 12)
            year += local.year
            day = min(local.day, calendar.monthrange(year, month + 1)[1])
            moved = date(year, month + 1, day) + timedelta(days=self.days)
            wall = datetime.combine(moved, local.time())
            first = wall.replace(tzinfo=zone).timestamp()
            second = wall.replace(tzinfo=zone, fold=1).timestamp()
            t = _first_change(zone, second, first) if first > second else first
        return t + self.seconds


def parse_offset(text: str) -> Offset:
    """The :class:`Offset` ``text`` says, or :class:`InvalidTiming` on ``fire_time_offset``."""
    return Offset(text)


def is_time_parameter(param: luigi.Parameter) -> bool:
    """Whether ``param`` can receive a fire time (a date, month, year, or date-and-time parameter).

    luigi is imported here, not at the module's top: a process that reads schedules but no task's parameters (one
    that only opens a registry: ``nectar runs``, ``nectar schedules``) does not pay luigi's import (~0.4 s of CPU);
    one that has a parameter to look at has imported luigi already."""
    import luigi

    # MonthParameter and YearParameter are DateParameters
    kinds = (luigi.DateParameter, luigi.DateHourParameter, luigi.DateMinuteParameter, luigi.DateSecondParameter)
    return isinstance(param, kinds)


def fire_value(param: luigi.Parameter, fire_time: float, timezone: str, offset: Offset | None = None) -> str:
    """The wire value of the time parameter ``param`` for a fire: local wall time, normalized and serialized.

    A DateParameter gets the local date (``2026-03-28``), a DateHourParameter the hour (``2026-03-28T03``).
    """
    if not is_time_parameter(param):
        raise InvalidTiming("fire_time_param", f"a {type(param).__name__} cannot receive a fire time")
    moved = offset.apply(fire_time, timezone) if offset is not None else fire_time
    local = datetime.fromtimestamp(moved, zone_of(timezone)).replace(tzinfo=None)
    import luigi  # imported already: ``param`` is one of its parameters (see is_time_parameter)

    value = local.date() if isinstance(param, luigi.DateParameter) else local
    return str(param.serialize(param.normalize(value)))
