"""Digest intervals: parsing, describing and due-time arithmetic. Pure functions."""

from __future__ import annotations

import datetime
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
DEFAULT_INTERVAL = 86_400
MAX_INTERVAL = 30 * 86_400
_PART = re.compile(r"(\d{1,6})([smhdw])")
_WHOLE = re.compile(r"(?:\d{1,6}[smhdw])+")


class IntervalError(ValueError):
    """An interval the user wrote that cannot be used; the message says why."""


def parse_interval(text: str, minimum: int) -> int:
    """Parse '30m', '6h', '1d', '1h30m' into seconds, within [minimum, 30 days]."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        return max(DEFAULT_INTERVAL, minimum)
    if not _WHOLE.fullmatch(compact):
        raise IntervalError(f"{text!r} is not an interval: try 30m, 6h or 1d")
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds < minimum:
        raise IntervalError(f"the shortest interval is {describe_interval(minimum)}")
    if seconds > MAX_INTERVAL:
        raise IntervalError(f"the longest interval is {describe_interval(MAX_INTERVAL)}")
    return seconds


def describe_interval(seconds: int) -> str:
    """Say an interval in words: 90 -> '1 minute 30 seconds', 86400 -> '1 day'."""
    parts = []
    for name, size in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}" + ("s" if count != 1 else ""))
    return " ".join(parts) or "0 seconds"


def next_due(now: float, interval: int) -> float:
    """When the digest after ``now`` is due."""
    return now + interval


def describe_time(timestamp: float) -> str:
    """A moment in UTC, as in '2026-11-27 08:00 UTC'."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
