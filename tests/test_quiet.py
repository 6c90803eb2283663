"""Tests of newsbot.quiet: a chat's quiet hours on its own clock, DST nights included."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsbot.quiet import QuietHours, describe_quiet, is_quiet, parse_quiet, quiet_ends
from newsbot.schedule import ScheduleError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
NIGHT = QuietHours(22 * 60, 7 * 60)


def utc(*fields: int) -> float:
    """An instant given in UTC: utc(2026, 3, 29, 1, 0)."""
    return datetime.datetime(*fields, tzinfo=datetime.UTC).timestamp()


def window(text: str) -> QuietHours:
    quiet = parse_quiet(text)
    assert quiet is not None
    return quiet


@pytest.mark.parametrize(
    "text, quiet",
    [
        ("22:00-07:00", QuietHours(1320, 420)),
        (" 22:00 - 7:00 ", QuietHours(1320, 420)),
        ("13:00-14:30", QuietHours(780, 870)),
        ("00:00-23:59", QuietHours(0, 1439)),
        ("23:59-00:00", QuietHours(1439, 0)),
        ("22:00\u201307:00", QuietHours(1320, 420)),
        ("off", None),
        (" OFF ", None),
    ],
)
def test_parse_quiet(text: str, quiet: QuietHours | None) -> None:
    assert parse_quiet(text) == quiet
    if quiet is not None:
        assert parse_quiet(quiet.text) == quiet


@pytest.mark.parametrize(
    "text, message",
    [
        ("22:00", "'22:00' is not a window: try 22:00-07:00, or off"),
        ("", "'' is not a window"),
        ("on", "'on' is not a window"),
        ("22:00-22:00", "quiet hours need two different times, as in 22:00-07:00"),
        ("25:00-07:00", "'25:00' is not a time of day"),
        ("22:00-07:60", "'07:60' is not a time of day"),
        ("22-07", "'22' is not a time of day"),
        ("22:00-", "'' is not a time of day"),
        ("22:00-07:00-08:00", "'07:00-08:00' is not a time of day"),
    ],
)
def test_parse_quiet_refuses_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as refusal:
        parse_quiet(text)
    assert message in str(refusal.value)


@pytest.mark.parametrize(
    "quiet, words",
    [
        (NIGHT, "quiet from 22:00 to 07:00"),
        (QuietHours(5, 65), "quiet from 00:05 to 01:05"),
        (None, "no quiet hours"),
    ],
)
def test_describe_quiet(quiet: QuietHours | None, words: str) -> None:
    assert describe_quiet(quiet) == words


@pytest.mark.parametrize(
    "text, zone, moment, quiet",
    [
        # A window spanning midnight, on an ordinary night in Berlin (CET, UTC+1).
        ("22:00-07:00", BERLIN, utc(2026, 3, 10, 20, 59, 59), False),
        ("22:00-07:00", BERLIN, utc(2026, 3, 10, 21, 0), True),
        ("22:00-07:00", BERLIN, utc(2026, 3, 10, 23, 0), True),
        ("22:00-07:00", BERLIN, utc(2026, 3, 11, 5, 59, 59), True),
        ("22:00-07:00", BERLIN, utc(2026, 3, 11, 6, 0), False),  # the end minute is not quiet
        ("22:00-07:00", BERLIN, utc(2026, 3, 11, 11, 0), False),
        # A window within one day.
        ("13:00-14:00", BERLIN, utc(2026, 3, 10, 11, 59), False),
        ("13:00-14:00", BERLIN, utc(2026, 3, 10, 12, 0), True),
        ("13:00-14:00", BERLIN, utc(2026, 3, 10, 12, 59, 59), True),
        ("13:00-14:00", BERLIN, utc(2026, 3, 10, 13, 0), False),
        ("13:00-14:00", BERLIN, utc(2026, 3, 10, 23, 0), False),
        # The same instant is quiet in one zone and not in another.
        ("22:00-07:00", NEW_YORK, utc(2026, 3, 10, 23, 0), False),  # 19:00 EDT
        ("22:00-07:00", KATHMANDU, utc(2026, 3, 10, 16, 15), True),  # 22:00 +0545
        ("22:00-07:00", KATHMANDU, utc(2026, 3, 10, 16, 14, 59), False),
        # Berlin's fall-back night: 01:00-02:30 is quiet in CEST, not from 02:30 to 03:00 CEST,
        # quiet again from 02:00 CET (the clocks read 02:00-02:30 twice), and not from 02:30 CET.
        ("01:00-02:30", BERLIN, utc(2026, 10, 24, 23, 30), True),
        ("01:00-02:30", BERLIN, utc(2026, 10, 25, 0, 45), False),
        ("01:00-02:30", BERLIN, utc(2026, 10, 25, 1, 15), True),
        ("01:00-02:30", BERLIN, utc(2026, 10, 25, 1, 30), False),
        # Berlin's spring-forward night: 02:00-03:00 never happens, 03:00 CEST follows 01:59 CET.
        ("02:30-06:00", BERLIN, utc(2026, 3, 29, 0, 59, 59), False),
        ("02:30-06:00", BERLIN, utc(2026, 3, 29, 1, 0), True),
        (None, BERLIN, utc(2026, 3, 10, 23, 0), False),
    ],
)
def test_is_quiet(text: str | None, zone: ZoneInfo, moment: float, quiet: bool) -> None:
    assert is_quiet(moment, parse_quiet(text) if text else None, zone) is quiet


@pytest.mark.parametrize(
    "text, zone, moment, ends",
    [
        # An ordinary night: 22:00 CET to 07:00 CET.
        ("22:00-07:00", BERLIN, utc(2026, 3, 10, 21, 0), utc(2026, 3, 11, 6, 0)),
        ("22:00-07:00", BERLIN, utc(2026, 3, 11, 5, 59, 59), utc(2026, 3, 11, 6, 0)),
        # Outside the window, the end of the next one.
        ("22:00-07:00", BERLIN, utc(2026, 3, 11, 6, 0), utc(2026, 3, 12, 6, 0)),
        ("22:00-07:00", BERLIN, utc(2026, 3, 11, 11, 0), utc(2026, 3, 12, 6, 0)),
        # Berlin's spring-forward night is 7 hours: 22:00 CET to 07:00 CEST.
        ("22:00-07:00", BERLIN, utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 5, 0)),
        # Its fall-back night is 10 hours: 22:00 CEST to 07:00 CET.
        ("22:00-07:00", BERLIN, utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 6, 0)),
        # An end that does not exist that night ends the window when the clocks jump...
        ("23:00-02:30", BERLIN, utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 1, 0)),
        # ... unless they jump into the window: then it goes on until the next day's end.
        ("02:45-02:15", BERLIN, utc(2026, 3, 29, 0, 0), utc(2026, 3, 30, 0, 15)),
        ("02:45-02:15", BERLIN, utc(2026, 3, 28, 2, 0), utc(2026, 3, 30, 0, 15)),
        # A start that does not exist that night: quiet from the jump, until the end.
        ("02:30-06:00", BERLIN, utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 4, 0)),
        # An end read twice, with quiet in between (the fall-back night above): each one ends.
        ("01:00-02:30", BERLIN, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 30)),
        ("01:00-02:30", BERLIN, utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 1, 30)),
        # An end read twice without quiet in between: the first ends it, the second is no end.
        ("22:00-02:00", BERLIN, utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 0, 0)),
        ("22:00-02:00", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 0)),
        # New York's fall-back night: 22:00 EDT to 07:00 EST.
        ("22:00-07:00", NEW_YORK, utc(2026, 11, 1, 3, 0), utc(2026, 11, 1, 12, 0)),
        # Its spring-forward night: 22:00 EST to 07:00 EDT.
        ("22:00-07:00", NEW_YORK, utc(2026, 3, 8, 4, 0), utc(2026, 3, 8, 11, 0)),
        # Kathmandu: 07:00 +0545 is 01:15 UTC.
        ("22:00-07:00", KATHMANDU, utc(2026, 3, 24, 20, 0), utc(2026, 3, 25, 1, 15)),
        # Lord Howe's fall back by 30 minutes: 01:30-02:00 (+11), then 01:30-02:00 (+10:30).
        ("01:00-01:45", LORD_HOWE, utc(2026, 4, 4, 14, 10), utc(2026, 4, 4, 14, 45)),
        ("01:00-01:45", LORD_HOWE, utc(2026, 4, 4, 15, 5), utc(2026, 4, 4, 15, 15)),
        # Its spring forward by 30 minutes: 02:00 (+10:30) jumps to 02:30 (+11).
        ("22:00-02:15", LORD_HOWE, utc(2026, 10, 3, 12, 0), utc(2026, 10, 3, 15, 30)),
    ],
)
def test_quiet_ends(text: str, zone: ZoneInfo, moment: float, ends: float) -> None:
    quiet = window(text)
    assert quiet_ends(moment, quiet, zone) == ends
    assert is_quiet(ends - 1, quiet, zone) and not is_quiet(ends, quiet, zone)


ZONES = [
    BERLIN,
    NEW_YORK,
    KATHMANDU,
    LORD_HOWE,
    ZoneInfo("UTC"),
    ZoneInfo("America/Santiago"),
    ZoneInfo("Pacific/Chatham"),
]
MINUTES = st.integers(0, 24 * 60 - 1)


@given(st.sampled_from(ZONES), st.floats(utc(2020, 1, 1), utc(2030, 1, 1)), MINUTES, MINUTES)
def test_quiet_lasts_until_it_ends(zone: ZoneInfo, moment: float, start: int, end: int) -> None:
    if start == end:
        return
    quiet = QuietHours(start, end)
    ends = quiet_ends(moment, quiet, zone)
    assert moment < ends <= moment + 2 * 86_400
    assert is_quiet(ends - 1, quiet, zone) and not is_quiet(ends, quiet, zone)
    if is_quiet(moment, quiet, zone):
        # Quiet all the way from the moment to the end, sampled each minute.
        step = 60.0
        probe = moment
        while probe < ends:
            assert is_quiet(probe, quiet, zone)
            probe += step


@pytest.mark.parametrize(
    "moment, quiet",
    [
        (utc(2026, 3, 11, 5, 59, 59) + 0.9999998, True),  # rounds to 07:00 at microseconds
        (utc(2026, 3, 11, 6, 0), False),
    ],
)
def test_is_quiet_does_not_round_into_the_end(moment: float, quiet: bool) -> None:
    assert is_quiet(moment, NIGHT, BERLIN) is quiet
