"""TEMPORARY stand-in (not committed): the helper's times.py replaces it."""

from __future__ import annotations
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
import luigi
from croniter import croniter


class InvalidTiming(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Timing:
    cron: str | None = None
    interval_s: int | None = None
    timezone: str = "UTC"

    @classmethod
    def parse(cls, cron, interval_s, timezone="UTC"):
        if (cron is None) == (interval_s is None):
            raise InvalidTiming("cron", "give cron or interval_s")
        if interval_s is not None and (
            isinstance(interval_s, bool) or not isinstance(interval_s, int) or interval_s < 1
        ):
            raise InvalidTiming("interval_s", "bad")
        try:
            ZoneInfo(timezone)
        except Exception:
            raise InvalidTiming("timezone", f"unknown {timezone}")
        if cron is not None and (len(str(cron).split()) != 5 or not croniter.is_valid(cron)):
            raise InvalidTiming("cron", "bad cron")
        return cls(cron, interval_s, timezone or "UTC")

    def next_after(self, t):
        if self.interval_s:
            return (int(t // self.interval_s) + 1) * self.interval_s
        z = ZoneInfo(self.timezone)
        w = datetime.fromtimestamp(t, z).replace(tzinfo=None)
        m = croniter(self.cron, w).get_next(datetime)
        return m.replace(tzinfo=z).timestamp()

    def fires_between(self, start, end, limit=None):
        out = []
        f = self.next_after(start)
        while f <= end and (limit is None or len(out) < limit):
            out.append(f)
            f = self.next_after(f)
        return out

    def last_at_or_before(self, t):
        if self.interval_s:
            return float((t // self.interval_s) * self.interval_s)
        raise NotImplementedError

    def next_fires(self, after, count=5):
        out = []
        f = after
        for _ in range(count):
            f = self.next_after(f)
            out.append(f)
        return out

    def iso(self, t):
        return datetime.fromtimestamp(t, ZoneInfo(self.timezone)).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Offset:
    text: str
    seconds: float = 0

    def apply(self, t, timezone):
        return t + self.seconds


def parse_offset(text):
    m = re.fullmatch(r"(-?)P(?:(\d+)D)?(?:T(?:(\d+)H)?)?", str(text))
    if not m:
        raise InvalidTiming("fire_time_offset", "not ISO")
    s = int(m.group(2) or 0) * 86400 + int(m.group(3) or 0) * 3600
    return Offset(text, -s if m.group(1) else s)


def is_time_parameter(param):
    return isinstance(param, (luigi.DateParameter, luigi.parameter._DatetimeParameterBase))


def fire_value(param, fire_time, timezone, offset=None):
    t = offset.apply(fire_time, timezone) if offset else fire_time
    local = datetime.fromtimestamp(t, ZoneInfo(timezone)).replace(tzinfo=None)
    value = local.date() if isinstance(param, luigi.DateParameter) else local
    return param.serialize(param.normalize(value))
