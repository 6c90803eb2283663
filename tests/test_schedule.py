"""Tests of newsbot.schedule: digest intervals as users write and read them."""

from __future__ import annotations

import datetime

import pytest

from newsbot.schedule import (DEFAULT_INTERVAL, MAX_INTERVAL, IntervalError, describe_interval,
                              describe_time, next_due, parse_interval)

MINUTE, HOUR, DAY = 60, 3600, 86_400


@pytest.mark.parametrize("text, minimum, seconds", [
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
])
def test_parse_interval(text: str, minimum: int, seconds: int) -> None:
    assert parse_interval(text, minimum) == seconds


@pytest.mark.parametrize("text, minimum, message", [
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
])
def test_parse_interval_refuses_with_a_reason(text: str, minimum: int, message: str) -> None:
    with pytest.raises(IntervalError) as refusal:
        parse_interval(text, minimum)
    assert message in str(refusal.value)


def test_interval_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_interval("soon", 900)


@pytest.mark.parametrize("seconds, words", [
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
])
def test_describe_interval(seconds: int, words: str) -> None:
    assert describe_interval(seconds) == words


@pytest.mark.parametrize("timestamp, text", [
    (0, "1970-01-01 00:00 UTC"),
    (1732612500.9, "2024-11-26 09:15 UTC"),
    (datetime.datetime(2026, 11, 27, 8, 0, 59, tzinfo=datetime.timezone.utc).timestamp(),
     "2026-11-27 08:00 UTC"),
    # A moment given in another zone is still said in UTC.
    (datetime.datetime(2026, 3, 29, 2, 30,
                       tzinfo=datetime.timezone(datetime.timedelta(hours=2))).timestamp(),
     "2026-03-29 00:30 UTC"),
])
def test_describe_time(timestamp: float, text: str) -> None:
    assert describe_time(timestamp) == text


@pytest.mark.parametrize("now, interval, due", [
    (1_700_000_000.0, 900, 1_700_000_900.0),
    (1_700_000_000.5, DAY, 1_700_086_400.5),
])
def test_next_due_is_one_interval_from_now(now: float, interval: int, due: float) -> None:
    assert next_due(now, interval) == due
