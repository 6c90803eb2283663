"""Digest schedules: intervals, and local times of day in the chat's own zone.

Parsing, describing and due-time arithmetic, all pure. An interval (``6h``) counts
seconds; a local schedule (``08:00``, ``mon 08:00``) follows the chat's wall clock,
so it runs exactly once per local day or week across daylight-saving changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import zoneinfo

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
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# Digests at a local wall-clock time ("08:00", "mon 08:00") in the chat's own zone.

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# 3-letter and full English day names, any case, to datetime's weekday numbers (Monday 0).
_WEEKDAY_NUMBERS = {
    name[:length]: number for number, name in enumerate(WEEKDAYS) for length in (3, len(name))
}
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
EXAMPLE_ZONE = "Europe/Berlin"
# Names in the tz database that are not places: the machine's own setting and placeholders.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


class ScheduleError(ValueError):
    """A local schedule or time zone the user wrote that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class LocalSchedule:
    """A digest at a local time of day: daily, or weekly on one day (0 is Monday)."""

    hour: int
    minute: int
    weekday: int | None = None

    @property
    def text(self) -> str:
        """The schedule as the user writes it, which ``parse_local_schedule`` reads back."""
        clock = f"{self.hour:02d}:{self.minute:02d}"
        return clock if self.weekday is None else f"{WEEKDAYS[self.weekday][:3]} {clock}"


def parse_clock(text: str) -> tuple[int, int]:
    """Parse '08:00' or '8:00' into (hour, minute), from 00:00 to 23:59."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"{text.strip()!r} is not a time of day: try 08:00 or 22:30")
    return int(match[1]), int(match[2])


def parse_local_schedule(text: str) -> LocalSchedule:
    """Parse '08:00' (daily) or 'mon 08:00' / 'Monday 08:00' (weekly)."""
    words = text.split()
    if len(words) == 1 and words[0].lower() in _WEEKDAY_NUMBERS:
        raise ScheduleError(f"a weekly digest needs a time too: try {words[0]} 08:00")
    if len(words) == 1:
        return LocalSchedule(*parse_clock(words[0]))
    if len(words) == 2:
        weekday = _WEEKDAY_NUMBERS.get(words[0].lower())
        if weekday is None:
            raise ScheduleError(f"{words[0]!r} is not a day: try mon or monday, as in mon 08:00")
        return LocalSchedule(*parse_clock(words[1]), weekday=weekday)
    raise ScheduleError(f"{text.strip()!r} is not a schedule: try 08:00 or mon 08:00")


def is_local_schedule(text: str) -> bool:
    """Whether a /subscribe argument means a local time ('08:00', 'mon …'), not an interval."""
    words = text.split()
    return ":" in text or (bool(words) and words[0].lower() in _WEEKDAY_NUMBERS)


def parse_zone(text: str) -> zoneinfo.ZoneInfo:
    """Parse an IANA time zone name ('Europe/Berlin', any case); refuse anything else."""
    name = text.strip()
    key = _zone_names().get(name.lower())
    if key is None:
        shown = name if len(name) <= 64 else name[:63] + "…"
        raise ScheduleError(
            f"{shown!r} is not a time zone: try an IANA name such as {EXAMPLE_ZONE}"
        )
    return zoneinfo.ZoneInfo(key)


@functools.cache
def _zone_names() -> dict[str, str]:
    """Every known zone name, lowercased, to its spelling in the tz database."""
    return {name.lower(): name for name in zoneinfo.available_timezones() - _NOT_ZONES}


def wall_instants(
    day: datetime.date, hour: int, minute: int, zone: zoneinfo.ZoneInfo
) -> tuple[float, ...]:
    """The instants at which the clocks in ``zone`` read ``hour:minute`` on ``day``.

    One as a rule; two, earlier first, when clocks are set back across it; and when it does
    not exist that day (clocks set forward across it), the first valid minute after it.
    """
    wall = datetime.datetime.combine(day, datetime.time(hour, minute))
    # A wall time in a gap exists again at the latest one day on (Samoa skipped a day).
    for _ in range(24 * 60 + 1):
        if _exists(wall, zone):
            break
        wall += datetime.timedelta(minutes=1)
    first, second = (wall.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1))
    return (first,) if first == second else (min(first, second), max(first, second))


def _exists(wall: datetime.datetime, zone: zoneinfo.ZoneInfo) -> bool:
    """Whether the clocks in ``zone`` ever read this naive wall time."""
    there = wall.replace(tzinfo=zone).astimezone(datetime.UTC).astimezone(zone)
    return there.replace(tzinfo=None) == wall


def local_run(day: datetime.date, schedule: LocalSchedule, zone: zoneinfo.ZoneInfo) -> float:
    """The one instant a schedule runs on ``day``: the first time the clocks read it."""
    return wall_instants(day, schedule.hour, schedule.minute, zone)[0]


def next_local_due(after: float, schedule: LocalSchedule, zone: zoneinfo.ZoneInfo) -> float:
    """The first run of a local schedule strictly after ``after``: one per local day or week."""
    today = datetime.datetime.fromtimestamp(after, zone).date()
    # Today's run may have passed, and a weekly one may be today's a week on: 8 days.
    # (A run pushed past midnight by a gap lands at the first instant of the next day,
    # so no instant of that day comes before it: yesterday's run never needs looking at.)
    for offset in range(8):
        day = today + datetime.timedelta(days=offset)
        if schedule.weekday is not None and day.weekday() != schedule.weekday:
            continue
        run = local_run(day, schedule, zone)
        if run > after:
            return run
    raise AssertionError("a daily or weekly schedule runs within 8 days")  # pragma: no cover


# What /subscribe sets: an interval in seconds, or a local time of day or week.
Schedule = int | LocalSchedule


def parse_schedule(text: str, minimum: int) -> Schedule:
    """Parse a /subscribe argument: a local time ('08:00', 'mon 08:00') or an interval."""
    return parse_local_schedule(text) if is_local_schedule(text) else parse_interval(text, minimum)


def next_run(after: float, schedule: Schedule, zone: zoneinfo.ZoneInfo) -> float:
    """When a digest on either kind of schedule is next due after ``after``."""
    if isinstance(schedule, LocalSchedule):
        return next_local_due(after, schedule, zone)
    return next_due(after, schedule)


def describe_schedule(schedule: LocalSchedule) -> str:
    """Say a local schedule in words: 'every day at 08:00', 'every Monday at 08:00'."""
    clock = f"{schedule.hour:02d}:{schedule.minute:02d}"
    if schedule.weekday is None:
        return f"every day at {clock}"
    return f"every {WEEKDAYS[schedule.weekday].capitalize()} at {clock}"


def describe_local_time(timestamp: float, zone: zoneinfo.ZoneInfo) -> str:
    """A moment in a chat's zone, as in '2026-03-29 08:00 CEST'."""
    return datetime.datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M %Z")
