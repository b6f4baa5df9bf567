"""Fire times of cron and interval timings across DST changes, offsets, and fire times as parameter values."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import luigi
import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from nectar.schedules.times import InvalidTiming, Timing, fire_value, is_time_parameter, parse_offset

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"
SYDNEY = "Australia/Sydney"


def at(local: str, zone: str = "UTC") -> float:
    """Unix seconds of the wall time ``local`` in ``zone`` (its first occurrence if it happens twice)."""
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).timestamp()


def day_fires(cron: str, zone: str, day: str) -> list[float]:
    """The fires of ``cron`` in ``zone`` during the local calendar day ``day`` (midnight included)."""
    start = at(f"{day}T00:00:00", zone)
    end = at(f"{day}T23:59:59", zone)
    return Timing.parse(cron, None, zone).fires_between(start - 1, end)


def isos(timing: Timing, fires: list[float]) -> list[str]:
    return [timing.iso(fire) for fire in fires]


@pytest.mark.parametrize(
    ("zone", "day", "fire"),
    [
        (PARIS, "2026-03-29", "2026-03-29T03:00:00+02:00"),
        (NEW_YORK, "2026-03-08", "2026-03-08T03:00:00-04:00"),
        (SYDNEY, "2026-10-04", "2026-10-04T03:00:00+11:00"),
    ],
)
def test_a_fixed_time_in_the_spring_forward_gap_fires_once_at_the_gap_end(zone: str, day: str, fire: str) -> None:
    timing = Timing.parse("30 2 * * *", None, zone)
    assert isos(timing, day_fires("30 2 * * *", zone, day)) == [fire]


@pytest.mark.parametrize(
    ("cron", "zone", "day", "fire"),
    [
        ("30 1 * * *", NEW_YORK, "2026-11-01", "2026-11-01T01:30:00-04:00"),
        ("30 2 * * *", PARIS, "2026-10-25", "2026-10-25T02:30:00+02:00"),
        ("30 2 * * *", SYDNEY, "2026-04-05", "2026-04-05T02:30:00+11:00"),
    ],
)
def test_a_fixed_time_in_the_repeated_hour_fires_once_at_its_first_occurrence(
    cron: str, zone: str, day: str, fire: str
) -> None:
    timing = Timing.parse(cron, None, zone)
    assert isos(timing, day_fires(cron, zone, day)) == [fire]


@pytest.mark.parametrize(
    ("zone", "day", "count"),
    [
        (NEW_YORK, "2026-06-15", 96),
        (NEW_YORK, "2026-03-08", 92),
        (NEW_YORK, "2026-11-01", 100),
        (PARIS, "2026-03-29", 92),
        (PARIS, "2026-10-25", 100),
    ],
)
def test_every_15_minutes_stays_every_15_real_minutes_across_dst(zone: str, day: str, count: int) -> None:
    fires = day_fires("*/15 * * * *", zone, day)
    assert len(fires) == count
    assert {later - earlier for earlier, later in zip(fires, fires[1:], strict=False)} == {900.0}


def test_every_15_minutes_jumps_the_gap_at_its_end() -> None:
    timing = Timing.parse("*/15 * * * *", None, PARIS)
    fires = timing.fires_between(at("2026-03-29T01:40", PARIS), at("2026-03-29T03:20", PARIS))
    assert isos(timing, fires) == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
    ]


@pytest.mark.parametrize("zone", [NEW_YORK, PARIS, SYDNEY])
def test_hourly_fires_25_times_on_the_fall_back_day(zone: str) -> None:
    day = {NEW_YORK: "2026-11-01", PARIS: "2026-10-25", SYDNEY: "2026-04-05"}[zone]
    fires = day_fires("0 * * * *", zone, day)
    assert len(fires) == 25
    assert {later - earlier for earlier, later in zip(fires, fires[1:], strict=False)} == {3600.0}


def test_a_wildcard_hour_fires_in_both_passes_of_the_repeated_hour() -> None:
    timing = Timing.parse("30 * * * *", None, NEW_YORK)
    fires = timing.fires_between(at("2026-11-01T00:45", NEW_YORK), at("2026-11-01T02:45", NEW_YORK))
    assert isos(timing, fires) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


def test_next_after_from_inside_the_repeated_hour() -> None:
    """From the second pass a fixed-time job waits for the next day; a wildcard-hour job fires in this pass."""
    second_pass_0110 = at("2026-11-01T06:10", "UTC")  # 01:10 EST
    fixed = Timing.parse("30 1 * * *", None, NEW_YORK)
    wildcard = Timing.parse("30 * * * *", None, NEW_YORK)
    assert fixed.iso(fixed.next_after(second_pass_0110)) == "2026-11-02T01:30:00-05:00"
    assert wildcard.iso(wildcard.next_after(second_pass_0110)) == "2026-11-01T01:30:00-05:00"
    first_pass_0145 = at("2026-11-01T05:45", "UTC")  # 01:45 EDT
    assert wildcard.iso(wildcard.next_after(first_pass_0145)) == "2026-11-01T01:30:00-05:00"


def test_last_at_or_before_across_the_gap_and_the_repeated_hour() -> None:
    daily = Timing.parse("30 2 * * *", None, PARIS)
    assert daily.iso(daily.last_at_or_before(at("2026-03-29T03:10", PARIS)) or 0) == "2026-03-29T03:00:00+02:00"
    assert daily.iso(daily.last_at_or_before(at("2026-03-29T00:59:59")) or 0) == "2026-03-28T02:30:00+01:00"
    assert daily.last_at_or_before(at("2026-03-29T01:00", "UTC")) == at("2026-03-29T01:00", "UTC")
    hourly = Timing.parse("30 * * * *", None, NEW_YORK)
    second_pass_0145 = at("2026-11-01T06:45", "UTC")
    assert hourly.iso(hourly.last_at_or_before(second_pass_0145) or 0) == "2026-11-01T01:30:00-05:00"
    fixed = Timing.parse("30 1 * * *", None, NEW_YORK)
    assert fixed.iso(fixed.last_at_or_before(second_pass_0145) or 0) == "2026-11-01T01:30:00-04:00"


@pytest.mark.parametrize(
    ("cron", "after", "fire"),
    [
        ("30 2 25 10 *", "2026-01-01T00:00", "2026-10-25T02:30:00+02:00"),  # both changes lie between
        ("30 2 29 3 *", "2025-04-01T00:00", "2026-03-29T03:00:00+02:00"),
        ("30 2 29 3 *", "2026-01-01T00:00", "2026-03-29T03:00:00+02:00"),  # one change lies between
        ("0 12 1 7 *", "2026-01-01T00:00", "2026-07-01T12:00:00+02:00"),
    ],
)
def test_a_yearly_fire_seen_from_months_away(cron: str, after: str, fire: str) -> None:
    timing = Timing.parse(cron, None, PARIS)
    assert timing.iso(timing.next_after(at(after))) == fire
    assert timing.iso(timing.last_at_or_before(at(fire[:19], "UTC") + 86400 * 30) or 0) == fire


def test_last_at_or_before() -> None:
    timing = Timing.parse("0 3 * * *", None, PARIS)
    three = at("2026-05-10T03:00", PARIS)
    assert timing.last_at_or_before(three) == three
    assert timing.last_at_or_before(three - 0.5) == three - 86400
    yearly = Timing.parse("0 0 1 1 *", None, "UTC")
    assert yearly.last_at_or_before(at("2026-05-10T00:00")) == at("2026-01-01T00:00")
    leap_day = Timing.parse("0 0 29 2 *", None, "UTC")
    assert leap_day.last_at_or_before(at("2026-05-10T00:00")) is None  # 2024-02-29 is more than a year back
    assert leap_day.next_after(at("2026-05-10T00:00")) == at("2028-02-29T00:00")


def test_fires_between_limit_next_fires_and_iso() -> None:
    timing = Timing.parse("0 3 * * *", None, PARIS)
    start = at("2026-03-27T03:00", PARIS)
    fires = timing.fires_between(start, start + 5 * 86400)
    assert isos(timing, fires) == [
        "2026-03-28T03:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T03:00:00+02:00",
        "2026-03-31T03:00:00+02:00",
        "2026-04-01T03:00:00+02:00",
    ]
    assert timing.fires_between(start, start + 5 * 86400, limit=2) == fires[:2]
    assert timing.fires_between(start, start + 5 * 86400, limit=0) == []
    assert timing.fires_between(start, start) == []
    assert timing.next_fires(start) == fires
    assert timing.next_fires(start, count=1) == fires[:1]
    assert Timing.parse("0 3 * * *", None, "UTC").iso(at("2026-03-28T03:00")) == "2026-03-28T03:00:00+00:00"


def test_intervals_are_multiples_of_the_interval_since_the_epoch() -> None:
    quarter = Timing.parse(None, 900, PARIS)
    assert quarter.iso(quarter.next_after(at("2026-03-29T00:52:10.5", "UTC"))) == "2026-03-29T03:00:00+02:00"
    assert quarter.next_after(at("2026-03-29T01:00", "UTC")) == at("2026-03-29T01:15", "UTC")
    assert quarter.last_at_or_before(at("2026-03-29T01:00", "UTC")) == at("2026-03-29T01:00", "UTC")
    assert quarter.last_at_or_before(at("2026-03-29T01:14:59", "UTC")) == at("2026-03-29T01:00", "UTC")
    hourly = Timing.parse(None, 3600, NEW_YORK)
    start = at("2026-10-31T00:00", "UTC")
    fires = hourly.fires_between(start, start + 3 * 86400)
    assert len(fires) == 72
    assert all(fire % 3600 == 0 for fire in fires)
    years = hourly.fires_between(start, start + 3 * 365 * 86400, limit=None)
    assert len(years) == 3 * 365 * 24 and years[-1] == start + 3 * 365 * 86400
    odd = Timing.parse(None, 7, "UTC")
    assert odd.next_fires(at("2026-01-01T00:00"), 3) == [1767225607.0, 1767225614.0, 1767225621.0]


def test_offset_calendar_parts_keep_the_wall_clock_across_dst() -> None:
    fire = at("2026-03-30T03:00", PARIS)  # CEST; the day before is CET
    assert datetime.fromtimestamp(parse_offset("-P1D").apply(fire, PARIS), ZoneInfo(PARIS)).isoformat() == (
        "2026-03-29T03:00:00+02:00"
    )
    assert parse_offset("-P2D").apply(fire, PARIS) == at("2026-03-28T03:00", PARIS)
    assert parse_offset("-P2D").apply(fire, PARIS) == fire - 2 * 86400 + 3600
    assert parse_offset("P-1D").apply(fire, PARIS) == parse_offset("-P1D").apply(fire, PARIS)
    assert parse_offset("-P1W").apply(fire, PARIS) == at("2026-03-23T03:00", PARIS)
    assert parse_offset("P1M").apply(at("2026-01-31T12:00", PARIS), PARIS) == at("2026-02-28T12:00", PARIS)
    assert parse_offset("-P1Y").apply(at("2028-02-29T12:00"), "UTC") == at("2027-02-28T12:00")
    into_the_gap = parse_offset("-P1D").apply(at("2026-03-30T02:30", PARIS), PARIS)
    assert into_the_gap == at("2026-03-29T03:00", PARIS)


def test_offset_time_parts_move_elapsed_seconds() -> None:
    fire = at("2026-03-29T03:30", PARIS)
    assert parse_offset("PT-1H").apply(fire, PARIS) == fire - 3600
    assert parse_offset("-PT1H").apply(fire, PARIS) == fire - 3600
    assert parse_offset("PT1H30M15.5S").apply(fire, PARIS) == fire + 5415.5
    assert parse_offset("P1DT1H").apply(at("2026-05-01T00:00"), "UTC") == at("2026-05-02T01:00")
    assert parse_offset("P1Y2M3W4DT5H6M7S").months == 14
    assert parse_offset("P1Y2M3W4DT5H6M7S").days == 25
    assert parse_offset("P1Y2M3W4DT5H6M7S").seconds == 5 * 3600 + 6 * 60 + 7


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1D", "-1D", "P1H", "PT1D", "P1.5D", "yesterday", "P1D2Y"])
def test_a_bad_offset_names_fire_time_offset(text: str) -> None:
    with pytest.raises(InvalidTiming) as raised:
        parse_offset(text)
    assert raised.value.field == "fire_time_offset"
    assert repr(text) in str(raised.value)


def test_a_huge_offset_is_refused() -> None:
    with pytest.raises(InvalidTiming, match="longer than") as raised:
        parse_offset("P99999999Y")
    assert raised.value.field == "fire_time_offset"


class Sample(luigi.Task):
    day = luigi.DateParameter()
    hour = luigi.DateHourParameter()
    minute = luigi.DateMinuteParameter()
    second = luigi.DateSecondParameter()
    month = luigi.MonthParameter()
    year = luigi.YearParameter()
    number = luigi.IntParameter()
    text = luigi.Parameter()


def param(name: str) -> luigi.Parameter:
    return dict(Sample.get_params())[name]


@pytest.mark.parametrize(
    ("name", "offset", "value"),
    [
        ("day", "-P1D", "2026-03-28"),
        ("day", None, "2026-03-29"),
        ("hour", None, "2026-03-29T03"),
        ("hour", "PT-1H", "2026-03-29T01"),  # one elapsed hour before 03:00 CEST is 01:00 CET
        ("minute", None, "2026-03-29T0307"),
        ("second", None, "2026-03-29T030709"),
        ("month", "-P1M", "2026-02"),
        ("year", None, "2026"),
    ],
)
def test_fire_value_is_the_local_wall_time_serialized_by_the_parameter(
    name: str, offset: str | None, value: str
) -> None:
    fire = at("2026-03-29T03:07:09", PARIS)  # 01:07:09 UTC
    moved = parse_offset(offset) if offset else None
    assert fire_value(param(name), fire, PARIS, moved) == value


def test_fire_value_of_a_utc_fire_in_a_zone_west_of_utc_is_the_local_date() -> None:
    assert fire_value(param("day"), at("2026-06-01T02:00"), NEW_YORK) == "2026-05-31"


def test_only_date_and_time_parameters_receive_fire_times() -> None:
    for name in ("day", "hour", "minute", "second", "month", "year"):
        assert is_time_parameter(param(name)), name
    assert not is_time_parameter(param("number"))
    assert not is_time_parameter(param("text"))
    with pytest.raises(InvalidTiming) as raised:
        fire_value(param("number"), 0.0, "UTC")
    assert raised.value.field == "fire_time_param"


@pytest.mark.parametrize(
    ("cron", "interval_s", "timezone", "field", "words"),
    [
        ("61 * * * *", None, "UTC", "cron", "out of range"),
        ("* * *", None, "UTC", "cron", "5 fields"),
        ("@reboot", None, "UTC", "cron", "@reboot"),
        ("* * * * * *", None, "UTC", "cron", "got 6"),
        ("0 0 * * * * 2030", None, "UTC", "cron", "got 7"),
        ("0 0 31 2 *", None, "UTC", "cron", "never fires"),
        ("R 0 * * *", None, "UTC", "cron", "random"),
        ("H 0 * * *", None, "UTC", "cron", "hash"),
        ("0 0 * * funday", None, "UTC", "cron", "not acceptable"),
        ("", None, "UTC", "cron", "got 0"),
        (5, None, "UTC", "cron", "string"),
        ("0 3 * * *", None, "Europe/Pariss", "timezone", "Europe/Pariss"),
        ("0 3 * * *", None, "../etc/passwd", "timezone", "unknown"),
        ("0 3 * * *", None, "", "timezone", "IANA"),
        ("0 3 * * *", None, "Europe", "timezone", "unknown"),
        ("0 3 * * *", None, "a" * 300, "timezone", "unknown"),
        (None, 0, "UTC", "interval_s", "at least 1"),
        (None, -5, "UTC", "interval_s", "at least 1"),
        (None, True, "UTC", "interval_s", "True"),
        (None, "10", "UTC", "interval_s", "'10'"),
        (None, 1.5, "UTC", "interval_s", "1.5"),
        ("0 3 * * *", 60, "UTC", "interval_s", "not both"),
        (None, None, "UTC", "cron", "not neither"),
    ],
)
def test_a_bad_timing_names_its_field(
    cron: object, interval_s: object, timezone: str | None, field: str, words: str
) -> None:
    with pytest.raises(InvalidTiming) as raised:
        # the wrong types are the inputs under test (a definition's fields as JSON gives them): kept as they come
        Timing.parse(cron, interval_s, timezone)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert words in str(raised.value)


def test_good_timings_parse() -> None:
    assert Timing.parse("0 3 * * *", None, None).timezone == "UTC"
    with pytest.raises(InvalidTiming, match="None"):
        Timing("0 3 * * *", None, None)  # type: ignore[arg-type]  # a zone of None, the wrong type under test
    daily = Timing.parse("@daily", None, PARIS)
    assert daily.next_after(at("2026-05-01T12:00", PARIS)) == at("2026-05-02T00:00", PARIS)
    assert Timing.parse("0 0 L * *", None, "UTC").next_after(at("2026-02-02T00:00")) == at("2026-02-28T00:00")
    assert Timing.parse("0 9 * * MON#2", None, "UTC").next_after(at("2026-03-01T00:00")) == at("2026-03-09T09:00")
    assert Timing.parse(None, 1, "UTC") == Timing(interval_s=1)


def test_day_of_month_and_day_of_week_restricted_together_fire_on_either() -> None:
    timing = Timing.parse("0 0 10 * FRI", None, "UTC")
    fires = timing.next_fires(at("2026-03-01T00:00"), 4)
    assert [datetime.fromtimestamp(fire, ZoneInfo("UTC")).strftime("%a %d") for fire in fires] == [
        "Fri 06",
        "Tue 10",
        "Fri 13",
        "Fri 20",
    ]
    assert Timing.parse("0 0 15 * FRI", None, "UTC").next_after(at("2026-03-13T00:00")) == at("2026-03-15T00:00")


CRON_FIELDS = st.tuples(
    st.sampled_from(["0", "30", "*/15", "*/7", "5,35", "59", "*"]),
    st.sampled_from(["*", "2", "1-3", "*/2", "0,2,23", "1", "3"]),
    st.sampled_from(["*", "1", "L", "*/3", "15,28"]),
    st.sampled_from(["*", "3", "10,11", "*/4"]),
    st.sampled_from(["*", "0", "1-5", "SUN"]),
)
YEAR_2026 = st.floats(min_value=at("2026-01-01T00:00"), max_value=at("2026-12-31T00:00"))


@settings(max_examples=150, deadline=None)
@given(fields=CRON_FIELDS, start=YEAR_2026, zone=st.sampled_from([PARIS, NEW_YORK]), span_days=st.integers(1, 40))
def test_fires_ascend_and_next_after_agrees_with_fires_between(
    fields: tuple[str, ...], start: float, zone: str, span_days: int
) -> None:
    timing = Timing.parse(" ".join(fields), None, zone)
    fires = timing.fires_between(start, start + span_days * 86400, limit=100)
    assert all(earlier < later for earlier, later in zip(fires, fires[1:], strict=False))
    assert all(start < fire <= start + span_days * 86400 for fire in fires)
    if fires:
        assert timing.next_after(start) == fires[0]
        assert timing.last_at_or_before(fires[0]) == fires[0]
        assert timing.last_at_or_before(fires[0] - 0.5) == timing.last_at_or_before(start)
    for earlier, later in zip(fires, fires[1:], strict=False):
        assert timing.next_after(earlier) == later
        assert timing.last_at_or_before(later - 1) == earlier


#: the instants (UTC) of 2026's clock changes in the zones tested
CHANGES_2026 = [
    (PARIS, at("2026-03-29T01:00")),
    (PARIS, at("2026-10-25T01:00")),
    (NEW_YORK, at("2026-03-08T07:00")),
    (NEW_YORK, at("2026-11-01T06:00")),
    (SYDNEY, at("2026-04-04T16:00")),
    (SYDNEY, at("2026-10-03T16:00")),
]


def fires_minute_by_minute(cron: str, zone: str, start: float, end: float) -> list[float]:
    """The documented rules applied to every minute of ``(start, end]``: the oracle for :meth:`Timing.next_after`.

    A minute fires if its wall time matches and it is the wall time's first occurrence (or the hour field is a
    wildcard), or if the clock jumped over a matching wall time just before it.
    """
    tz = ZoneInfo(zone)
    wall_of = lambda u: datetime.fromtimestamp(u, tz)  # noqa: E731
    walker = croniter(cron, wall_of(start - 7200).replace(tzinfo=None))
    matching = set()
    while (match := walker.get_next(datetime)) <= wall_of(end + 7200).replace(tzinfo=None):
        matching.add(match)
    wildcard_hour = cron.split()[1].startswith("*")
    fires = []
    minute = (start // 60 + 1) * 60
    while minute <= end:
        local, before = wall_of(minute), wall_of(minute - 60).replace(tzinfo=None)
        wall = local.replace(tzinfo=None)
        jumped = [before + timedelta(minutes=k) for k in range(1, int((wall - before).total_seconds() // 60))]
        if (wall in matching and (local.fold == 0 or wildcard_hour)) or any(skipped in matching for skipped in jumped):
            fires.append(minute)
        minute += 60
    return fires


@settings(max_examples=60, deadline=None)
@given(
    fields=CRON_FIELDS,
    change=st.sampled_from(CHANGES_2026),
    before=st.floats(min_value=0, max_value=10 * 3600),
    span=st.floats(min_value=60, max_value=14 * 3600),
)
def test_fires_near_a_clock_change_follow_the_documented_rules(
    fields: tuple[str, ...], change: tuple[str, float], before: float, span: float
) -> None:
    zone, instant = change
    cron = " ".join(fields)
    start = instant - before
    timing = Timing.parse(cron, None, zone)
    fires = fires_minute_by_minute(cron, zone, start, start + span)
    assert timing.fires_between(start, start + span) == fires
    if fires:
        assert timing.last_at_or_before(start + span) == fires[-1]
    sample = range(1, len(fires), max(1, len(fires) // 10))
    assert [timing.last_at_or_before(fires[k] - 1) for k in sample] == [fires[k - 1] for k in sample]
    assert [timing.last_at_or_before(fires[k] + 59) for k in sample] == [fires[k] for k in sample]


@pytest.mark.parametrize("timing", [Timing(cron="0 * * * *", timezone=PARIS), Timing(interval_s=3600)])
def test_a_time_a_hair_before_a_fire_is_before_it(timing: Timing) -> None:
    """A time a hair before a fire (the float just below it: adding the zone's offset rounds it onto the fire) is
    before it: the fire is next and the one before it is the last."""
    fire = at("2026-12-31T01:00", PARIS)
    for before in (fire - 0.999, fire - 1e-6, math.nextafter(fire, 0)):
        assert timing.next_after(before) == fire
        assert timing.last_at_or_before(before) == fire - 3600
