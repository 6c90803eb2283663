"""Tests of newsbot.schedule: digest intervals as users write and read them."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsbot.schedule import (
    DEFAULT_INTERVAL,
    MAX_INTERVAL,
    IntervalError,
    LocalSchedule,
    ScheduleError,
    describe_interval,
    describe_local_time,
    describe_schedule,
    describe_time,
    is_local_schedule,
    next_due,
    next_local_due,
    next_run,
    parse_interval,
    parse_local_schedule,
    parse_schedule,
    parse_zone,
)

MINUTE, HOUR, DAY = 60, 3600, 86_400


@pytest.mark.parametrize(
    "text, minimum, seconds",
    [
        ("30m", 900, 30 * MINUTE),
        ("15m", 900, 15 * MINUTE),
        ("6h", 900, 6 * HOUR),
        ("1d", 900, DAY),
        ("1h30m", 900, 90 * MINUTE),
        ("1h 30m", 900, 90 * MINUTE),
        (" 6H ", 900, 6 * HOUR),
        ("1w", 900, 7 * DAY),
        ("30d", 900, 30 * DAY),
        ("90s", 60, 90),
        ("60s", 60, 60),
        ("", 900, DEFAULT_INTERVAL),
        ("   ", 60, DEFAULT_INTERVAL),
        ("", 2 * DAY, 2 * DAY),  # the default never undercuts the minimum
    ],
)
def test_parse_interval(text: str, minimum: int, seconds: int) -> None:
    assert parse_interval(text, minimum) == seconds


@pytest.mark.parametrize(
    "text, minimum, message",
    [
        ("90s", 900, "the shortest interval is 15 minutes"),
        ("14m", 900, "the shortest interval is 15 minutes"),
        ("59s", 60, "the shortest interval is 1 minute"),
        ("0m", 60, "the shortest interval is 1 minute"),
        ("0m", 900, "the shortest interval is 15 minutes"),
        ("abc", 900, "'abc' is not an interval: try 30m, 6h or 1d"),
        ("-5m", 900, "'-5m' is not an interval"),
        ("5", 900, "'5' is not an interval"),
        ("1.5h", 900, "is not an interval"),
        ("m30", 900, "is not an interval"),
        ("1y", 900, "is not an interval"),
        ("31d", 900, "the longest interval is 30 days"),
        ("30d1s", 900, "the longest interval is 30 days"),
        ("5w", 900, "the longest interval is 30 days"),
        ("999999d", 900, "the longest interval is 30 days"),
    ],
)
def test_parse_interval_refuses_with_a_reason(text: str, minimum: int, message: str) -> None:
    with pytest.raises(IntervalError) as refusal:
        parse_interval(text, minimum)
    assert message in str(refusal.value)


def test_interval_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_interval("soon", 900)


@pytest.mark.parametrize(
    "seconds, words",
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (90, "1 minute 30 seconds"),
        (15 * MINUTE, "15 minutes"),
        (HOUR, "1 hour"),
        (90 * MINUTE, "1 hour 30 minutes"),
        (6 * HOUR, "6 hours"),
        (DAY, "1 day"),
        (DAY + HOUR + MINUTE + 1, "1 day 1 hour 1 minute 1 second"),
        (7 * DAY, "7 days"),
        (MAX_INTERVAL, "30 days"),
    ],
)
def test_describe_interval(seconds: int, words: str) -> None:
    assert describe_interval(seconds) == words


@pytest.mark.parametrize(
    "timestamp, text",
    [
        (0, "1970-01-01 00:00 UTC"),
        (1732612500.9, "2024-11-26 09:15 UTC"),
        (
            datetime.datetime(2026, 11, 27, 8, 0, 59, tzinfo=datetime.UTC).timestamp(),
            "2026-11-27 08:00 UTC",
        ),
        # A moment given in another zone is still said in UTC.
        (
            datetime.datetime(
                2026, 3, 29, 2, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
            ).timestamp(),
            "2026-03-29 00:30 UTC",
        ),
    ],
)
def test_describe_time(timestamp: float, text: str) -> None:
    assert describe_time(timestamp) == text


@pytest.mark.parametrize(
    "now, interval, due",
    [
        (1_700_000_000.0, 900, 1_700_000_900.0),
        (1_700_000_000.5, DAY, 1_700_086_400.5),
    ],
)
def test_next_due_is_one_interval_from_now(now: float, interval: int, due: float) -> None:
    assert next_due(now, interval) == due


# Local schedules: the chat's own wall clock, once per local day or week across DST.

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
SANTIAGO = ZoneInfo("America/Santiago")
UTC = ZoneInfo("UTC")


def utc(*fields: int) -> float:
    """An instant given in UTC: utc(2026, 3, 29, 1, 0)."""
    return datetime.datetime(*fields, tzinfo=datetime.UTC).timestamp()


def local_midnight(day: datetime.date, zone: ZoneInfo) -> float:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=zone).timestamp()


def daily(first: float, count: int) -> list[float]:
    """``count`` instants a UTC day apart: runs while the zone's offset stays the same."""
    return [first + index * DAY for index in range(count)]


def runs(after: float, schedule: LocalSchedule, zone: ZoneInfo, count: int) -> list[float]:
    """The next ``count`` runs of a schedule after ``after``, each computed from the last."""
    found = []
    for _ in range(count):
        after = next_local_due(after, schedule, zone)
        found.append(after)
    return found


def local_dates(instants: list[float], zone: ZoneInfo) -> list[datetime.date]:
    return [datetime.datetime.fromtimestamp(moment, zone).date() for moment in instants]


@pytest.mark.parametrize(
    "zone, first_day, clock, expected",
    [
        # Berlin springs forward on 2026-03-29 at 02:00 CET (01:00 UTC) to 03:00 CEST.
        (
            BERLIN,
            datetime.date(2026, 3, 24),
            "08:00",
            daily(utc(2026, 3, 24, 7, 0), 5) + daily(utc(2026, 3, 29, 6, 0), 5),
        ),
        # 02:30 does not exist on the 29th: the digest comes at 03:00 CEST, the first valid minute.
        (
            BERLIN,
            datetime.date(2026, 3, 24),
            "02:30",
            [
                *daily(utc(2026, 3, 24, 1, 30), 5),
                utc(2026, 3, 29, 1, 0),
                *daily(utc(2026, 3, 30, 0, 30), 4),
            ],
        ),
        # Berlin falls back on 2026-10-25 at 03:00 CEST (01:00 UTC) to 02:00 CET.
        (
            BERLIN,
            datetime.date(2026, 10, 20),
            "08:00",
            daily(utc(2026, 10, 20, 6, 0), 5) + daily(utc(2026, 10, 25, 7, 0), 5),
        ),
        # 02:30 happens twice on the 25th (00:30 and 01:30 UTC): the digest comes once, first.
        (
            BERLIN,
            datetime.date(2026, 10, 20),
            "02:30",
            daily(utc(2026, 10, 20, 0, 30), 6) + daily(utc(2026, 10, 26, 1, 30), 4),
        ),
        # New York springs forward on 2026-03-08 at 02:00 EST (07:00 UTC) to 03:00 EDT.
        (
            NEW_YORK,
            datetime.date(2026, 3, 3),
            "08:00",
            daily(utc(2026, 3, 3, 13, 0), 5) + daily(utc(2026, 3, 8, 12, 0), 5),
        ),
        (
            NEW_YORK,
            datetime.date(2026, 3, 3),
            "02:30",
            [
                *daily(utc(2026, 3, 3, 7, 30), 5),
                utc(2026, 3, 8, 7, 0),
                *daily(utc(2026, 3, 9, 6, 30), 4),
            ],
        ),
        # New York falls back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00 EST.
        (
            NEW_YORK,
            datetime.date(2026, 10, 27),
            "08:00",
            daily(utc(2026, 10, 27, 12, 0), 5) + daily(utc(2026, 11, 1, 13, 0), 5),
        ),
        # 01:30 happens twice on 11-01 (05:30 and 06:30 UTC): once, the first.
        (
            NEW_YORK,
            datetime.date(2026, 10, 27),
            "01:30",
            daily(utc(2026, 10, 27, 5, 30), 6) + daily(utc(2026, 11, 2, 6, 30), 4),
        ),
        # 02:30 happens once on 11-01, already in EST.
        (
            NEW_YORK,
            datetime.date(2026, 10, 27),
            "02:30",
            daily(utc(2026, 10, 27, 6, 30), 5) + daily(utc(2026, 11, 1, 7, 30), 5),
        ),
        # Kathmandu is UTC+5:45 all year: 08:00 is 02:15 UTC, which no whole-hour offset gives.
        (KATHMANDU, datetime.date(2026, 3, 24), "08:00", daily(utc(2026, 3, 24, 2, 15), 10)),
        # Lord Howe springs forward by 30 minutes on 2026-10-04, 02:00 (+10:30) to 02:30 (+11).
        (
            LORD_HOWE,
            datetime.date(2026, 9, 29),
            "02:15",
            [
                *daily(utc(2026, 9, 28, 15, 45), 5),
                utc(2026, 10, 3, 15, 30),
                *daily(utc(2026, 10, 4, 15, 15), 4),
            ],
        ),
        (
            LORD_HOWE,
            datetime.date(2026, 9, 29),
            "02:00",
            [
                *daily(utc(2026, 9, 28, 15, 30), 5),
                utc(2026, 10, 3, 15, 30),
                *daily(utc(2026, 10, 4, 15, 0), 4),
            ],
        ),
        (
            LORD_HOWE,
            datetime.date(2026, 9, 29),
            "02:30",
            daily(utc(2026, 9, 28, 16, 0), 5) + daily(utc(2026, 10, 3, 15, 30), 5),
        ),
        # Lord Howe falls back by 30 minutes on 2026-04-05, 02:00 (+11) to 01:30 (+10:30):
        # 01:45 happens twice (14:45 and 15:15 UTC on the 4th), and runs once, first.
        (
            LORD_HOWE,
            datetime.date(2026, 3, 31),
            "01:45",
            daily(utc(2026, 3, 30, 14, 45), 6) + daily(utc(2026, 4, 5, 15, 15), 4),
        ),
        (
            LORD_HOWE,
            datetime.date(2026, 3, 31),
            "08:00",
            daily(utc(2026, 3, 30, 21, 0), 5) + daily(utc(2026, 4, 4, 21, 30), 5),
        ),
        # Santiago springs forward at midnight (2026-09-06 00:00 -04 to 01:00 -03): the day's
        # 00:30 is at 01:00, and the digest still belongs to the 6th.
        (
            SANTIAGO,
            datetime.date(2026, 9, 1),
            "00:30",
            [
                *daily(utc(2026, 9, 1, 4, 30), 5),
                utc(2026, 9, 6, 4, 0),
                *daily(utc(2026, 9, 7, 3, 30), 4),
            ],
        ),
        # ... and falls back at midnight (2026-04-05 00:00 -03 to 04-04 23:00 -04): 23:30 on
        # the 4th happens twice, and runs once, first.
        (
            SANTIAGO,
            datetime.date(2026, 3, 31),
            "23:30",
            daily(utc(2026, 4, 1, 2, 30), 5) + daily(utc(2026, 4, 6, 3, 30), 5),
        ),
    ],
)
def test_one_daily_run_per_local_day_across_dst(
    zone: ZoneInfo, first_day: datetime.date, clock: str, expected: list[float]
) -> None:
    found = runs(local_midnight(first_day, zone), parse_local_schedule(clock), zone, 10)
    assert found == expected
    assert local_dates(found, zone) == [
        first_day + datetime.timedelta(days=offset) for offset in range(10)
    ]


@pytest.mark.parametrize(
    "zone, after, text, expected",
    [
        # Sundays at 02:30 in Berlin: the spring-forward Sunday runs at 03:00 CEST.
        (
            BERLIN,
            utc(2026, 3, 15, 0, 0),
            "sun 02:30",
            [
                utc(2026, 3, 15, 1, 30),
                utc(2026, 3, 22, 1, 30),
                utc(2026, 3, 29, 1, 0),
                utc(2026, 4, 5, 0, 30),
            ],
        ),
        # ... and the fall-back Sunday once, at the first 02:30.
        (
            BERLIN,
            utc(2026, 10, 18, 0, 0),
            "Sunday 02:30",
            [utc(2026, 10, 18, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 11, 1, 1, 30)],
        ),
        # Mondays at 08:00 in New York across its fall back.
        (
            NEW_YORK,
            utc(2026, 10, 21, 0, 0),
            "MON 08:00",
            [utc(2026, 10, 26, 12, 0), utc(2026, 11, 2, 13, 0), utc(2026, 11, 9, 13, 0)],
        ),
        # Saturdays at 23:30 in Lord Howe across its spring forward (Sunday the 4th).
        (
            LORD_HOWE,
            utc(2026, 9, 20, 0, 0),
            "sat 23:30",
            [utc(2026, 9, 26, 13, 0), utc(2026, 10, 3, 13, 0), utc(2026, 10, 10, 12, 30)],
        ),
    ],
)
def test_one_weekly_run_per_local_week_across_dst(
    zone: ZoneInfo, after: float, text: str, expected: list[float]
) -> None:
    schedule = parse_local_schedule(text)
    found = runs(after, schedule, zone, len(expected))
    assert found == expected
    assert {day.weekday() for day in local_dates(found, zone)} == {schedule.weekday}


@pytest.mark.parametrize(
    "after, expected",
    [
        # Exactly at a run, the next is the next day's.
        (utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30)),
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        # Between the two 02:30s of the fall-back night, and at the second one: no second run.
        (utc(2026, 10, 25, 1, 0), utc(2026, 10, 26, 1, 30)),
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)),
        # A second before a run, that run.
        (utc(2026, 10, 25, 0, 30) - 1, utc(2026, 10, 25, 0, 30)),
        (utc(2026, 3, 29, 1, 0) - 0.5, utc(2026, 3, 29, 1, 0)),
    ],
)
def test_next_local_due_is_strictly_after(after: float, expected: float) -> None:
    assert next_local_due(after, LocalSchedule(2, 30), BERLIN) == expected


ZONES = [
    BERLIN,
    NEW_YORK,
    KATHMANDU,
    LORD_HOWE,
    UTC,
    SANTIAGO,
    ZoneInfo("Pacific/Chatham"),
    ZoneInfo("America/St_Johns"),
    ZoneInfo("Asia/Tehran"),
]


@given(
    st.sampled_from(ZONES),
    st.floats(utc(2020, 1, 1), utc(2030, 1, 1)),
    st.integers(0, 23),
    st.integers(0, 59),
)
def test_daily_runs_fall_on_consecutive_local_days_at_the_time(
    zone: ZoneInfo, after: float, hour: int, minute: int
) -> None:
    schedule = LocalSchedule(hour, minute)
    found = runs(after, schedule, zone, 3)
    assert after < found[0] < found[1] < found[2]
    days = local_dates([after, *found], zone)
    assert days[1] - days[0] in (datetime.timedelta(0), datetime.timedelta(days=1))
    assert days[3] - days[2] == days[2] - days[1] == datetime.timedelta(days=1)
    wanted = datetime.time(hour, minute)
    for moment in found:
        clock = datetime.datetime.fromtimestamp(moment, zone)
        if clock.time() != wanted:  # only where the time did not exist that day:
            before = datetime.datetime.fromtimestamp(moment - 60, zone)
            assert before.utcoffset() != clock.utcoffset()
            scheduled = datetime.datetime.combine(clock.date(), wanted)
            assert before.replace(tzinfo=None) < scheduled < clock.replace(tzinfo=None)


@given(
    st.sampled_from(ZONES),
    st.floats(utc(2020, 1, 1), utc(2030, 1, 1)),
    st.integers(0, 6),
    st.integers(0, 23),
    st.integers(0, 59),
)
def test_weekly_runs_fall_a_local_week_apart_on_the_day(
    zone: ZoneInfo, after: float, weekday: int, hour: int, minute: int
) -> None:
    found = runs(after, LocalSchedule(hour, minute, weekday), zone, 3)
    assert after < found[0] < found[1] < found[2]
    days = local_dates([after, *found], zone)
    assert datetime.timedelta(0) <= days[1] - days[0] <= datetime.timedelta(days=7)
    assert days[3] - days[2] == days[2] - days[1] == datetime.timedelta(days=7)
    # Each on the chosen weekday, in the zone.
    assert all(day.weekday() == weekday for day in days[1:])


@pytest.mark.parametrize(
    "text, schedule",
    [
        ("08:00", LocalSchedule(8, 0)),
        ("8:00", LocalSchedule(8, 0)),
        (" 23:59 ", LocalSchedule(23, 59)),
        ("00:00", LocalSchedule(0, 0)),
        ("mon 08:00", LocalSchedule(8, 0, 0)),
        ("Monday 08:00", LocalSchedule(8, 0, 0)),
        ("TUE 6:05", LocalSchedule(6, 5, 1)),
        ("wednesday  12:00", LocalSchedule(12, 0, 2)),
        ("thu 00:00", LocalSchedule(0, 0, 3)),
        ("Fri 17:30", LocalSchedule(17, 30, 4)),
        ("saturday 09:15", LocalSchedule(9, 15, 5)),
        ("sun 02:30", LocalSchedule(2, 30, 6)),
    ],
)
def test_parse_local_schedule(text: str, schedule: LocalSchedule) -> None:
    assert parse_local_schedule(text) == schedule
    assert parse_local_schedule(schedule.text) == schedule


@pytest.mark.parametrize(
    "text, message",
    [
        ("24:00", "'24:00' is not a time of day: try 08:00 or 22:30"),
        ("08:60", "'08:60' is not a time of day"),
        ("8", "'8' is not a time of day"),
        ("08:0", "'08:0' is not a time of day"),
        ("008:00", "'008:00' is not a time of day"),
        ("-1:00", "'-1:00' is not a time of day"),
        ("8am", "'8am' is not a time of day"),
        ("", "'' is not a schedule: try 08:00 or mon 08:00"),
        ("funday 08:00", "'funday' is not a day: try mon or monday, as in mon 08:00"),
        ("mo 08:00", "'mo' is not a day"),
        ("mond 08:00", "'mond' is not a day"),
        ("mon 25:00", "'25:00' is not a time of day"),
        ("mon tue 08:00", "is not a schedule"),
        ("Mon", "a weekly digest needs a time too: try Mon 08:00"),
    ],
)
def test_parse_local_schedule_refuses_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as refusal:
        parse_local_schedule(text)
    assert message in str(refusal.value)


@pytest.mark.parametrize(
    "text, local",
    [
        ("08:00", True),
        ("mon 08:00", True),
        ("Friday", True),
        ("6h", False),
        ("1h30m", False),
        ("", False),
        ("   ", False),
    ],
)
def test_is_local_schedule(text: str, local: bool) -> None:
    assert is_local_schedule(text) is local


@pytest.mark.parametrize(
    "schedule, words",
    [
        (LocalSchedule(8, 0), "every day at 08:00"),
        (LocalSchedule(6, 5, 0), "every Monday at 06:05"),
        (LocalSchedule(23, 59, 6), "every Sunday at 23:59"),
    ],
)
def test_describe_schedule(schedule: LocalSchedule, words: str) -> None:
    assert describe_schedule(schedule) == words


@pytest.mark.parametrize(
    "moment, zone, text",
    [
        (utc(2026, 3, 29, 6, 0), BERLIN, "2026-03-29 08:00 CEST"),
        (utc(2026, 3, 29, 1, 0) - 60, BERLIN, "2026-03-29 01:59 CET"),
        (utc(2026, 10, 25, 0, 30), BERLIN, "2026-10-25 02:30 CEST"),
        (utc(2026, 10, 25, 1, 30), BERLIN, "2026-10-25 02:30 CET"),
        (utc(2026, 11, 1, 13, 0), NEW_YORK, "2026-11-01 08:00 EST"),
        (utc(2026, 3, 24, 2, 15), KATHMANDU, "2026-03-24 08:00 +0545"),
        (utc(2026, 10, 3, 15, 30), LORD_HOWE, "2026-10-04 02:30 +11"),
        (utc(2026, 3, 24, 2, 15), UTC, "2026-03-24 02:15 UTC"),
    ],
)
def test_describe_local_time(moment: float, zone: ZoneInfo, text: str) -> None:
    assert describe_local_time(moment, zone) == text


@pytest.mark.parametrize(
    "text, key",
    [
        ("Europe/Berlin", "Europe/Berlin"),
        (" europe/berlin ", "Europe/Berlin"),
        ("AMERICA/NEW_YORK", "America/New_York"),
        ("Asia/Kathmandu", "Asia/Kathmandu"),
        ("UTC", "UTC"),
        ("Etc/GMT-14", "Etc/GMT-14"),
    ],
)
def test_parse_zone(text: str, key: str) -> None:
    assert parse_zone(text).key == key


@pytest.mark.parametrize(
    "text, shown",
    [
        ("Mars/Olympus_Mons", "'Mars/Olympus_Mons'"),
        ("Europe/Berlinn", "'Europe/Berlinn'"),
        ("CEST", "'CEST'"),
        ("UTC+2", "'UTC+2'"),
        ("", "''"),
        ("localtime", "'localtime'"),
        ("Factory", "'Factory'"),
        ("../../etc/passwd", "'../../etc/passwd'"),
        ("/usr/share/zoneinfo/UTC", "'/usr/share/zoneinfo/UTC'"),
        ("Europe", "'Europe'"),
        ("x" * 500, "'" + "x" * 63 + "…'"),
    ],
)
def test_parse_zone_refuses_naming_what_was_given(text: str, shown: str) -> None:
    with pytest.raises(ScheduleError) as refusal:
        parse_zone(text)
    assert str(refusal.value) == (
        f"{shown} is not a time zone: try an IANA name such as Europe/Berlin"
    )


def test_zones_come_from_the_tzdata_wheel_when_the_system_has_none() -> None:
    # The slim image has no /usr/share/zoneinfo. An empty PYTHONTZPATH hides the system's
    # tz files from zoneinfo, leaving only the tzdata wheel, as in that image.
    program = (
        "from newsbot.schedule import *\n"
        "zone = parse_zone('australia/lord_howe')\n"
        f"due = next_local_due({utc(2026, 10, 3, 0, 0)}, parse_local_schedule('02:15'), zone)\n"
        "print(zone.key, describe_local_time(due, zone))\n"
    )
    environment = {**os.environ, "PYTHONTZPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "Australia/Lord_Howe 2026-10-04 02:30 +11\n"


@pytest.mark.parametrize(
    "text, schedule",
    [
        ("08:00", LocalSchedule(8, 0)),
        ("mon 08:00", LocalSchedule(8, 0, 0)),
        ("6h", 6 * HOUR),
        ("", DEFAULT_INTERVAL),
    ],
)
def test_parse_schedule_tells_local_times_from_intervals(
    text: str, schedule: LocalSchedule | int
) -> None:
    assert parse_schedule(text, 900) == schedule


@pytest.mark.parametrize(
    "text, error",
    [
        ("25:00", ScheduleError),
        ("mon", ScheduleError),
        ("soon", IntervalError),
        ("1m", IntervalError),
    ],
)
def test_parse_schedule_refuses_either_kind(text: str, error: type[ValueError]) -> None:
    with pytest.raises(error):
        parse_schedule(text, 900)


@pytest.mark.parametrize(
    "schedule, due",
    [
        # An interval counts seconds, whatever the clocks do...
        (6 * HOUR, utc(2026, 3, 29, 0, 30) + 6 * HOUR),
        # ... a local time follows them.
        (LocalSchedule(8, 0), utc(2026, 3, 29, 6, 0)),
    ],
)
def test_next_run_follows_either_kind(schedule: LocalSchedule | int, due: float) -> None:
    assert next_run(utc(2026, 3, 29, 0, 30), schedule, BERLIN) == due
