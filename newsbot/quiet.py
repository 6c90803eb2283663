"""Quiet hours: a chat's nightly window in its own zone, when alerts and digests wait.

A window is two wall-clock times, ``22:00-07:00``: quiet from the first (included) to the
second (excluded), spanning midnight when the first is later. It follows the chat's clock
across daylight-saving changes, so a night can be an hour shorter or longer, and in a
fall-back night a wall time that happens twice is quiet both times. Pure functions.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import zoneinfo

from newsbot.schedule import ScheduleError, parse_clock, wall_instants

OFF = "off"


@dataclasses.dataclass(frozen=True)
class QuietHours:
    """A window of local time, in minutes after midnight: ``start`` is quiet, ``end`` not."""

    start: int
    end: int

    @property
    def text(self) -> str:
        """The window as the user writes it, which ``parse_quiet`` reads back."""
        return f"{_clock(self.start)}-{_clock(self.end)}"


def parse_quiet(text: str) -> QuietHours | None:
    """Parse '22:00-07:00' into a window, or 'off' into None."""
    # Phones may turn the hyphen into a dash as it is typed.
    compact = text.strip().replace("\u2013", "-").replace("\u2014", "-")
    if compact.lower() == OFF:
        return None
    start, dash, end = compact.partition("-")
    if not dash:
        raise ScheduleError(f"{compact!r} is not a window: try 22:00-07:00, or off")
    first, last = (_minutes(*parse_clock(part)) for part in (start, end))
    if first == last:
        raise ScheduleError("quiet hours need two different times, as in 22:00-07:00")
    return QuietHours(first, last)


def describe_quiet(quiet: QuietHours | None) -> str:
    """Say quiet hours in words: 'quiet from 22:00 to 07:00', or 'no quiet hours'."""
    if quiet is None:
        return "no quiet hours"
    return f"quiet from {_clock(quiet.start)} to {_clock(quiet.end)}"


def is_quiet(moment: float, quiet: QuietHours | None, zone: zoneinfo.ZoneInfo) -> bool:
    """Whether the chat's clock at ``moment`` reads a time inside its quiet hours."""
    if quiet is None:
        return False
    # The whole second is converted and the fraction added, since fromtimestamp rounds to
    # microseconds: 06:59:59.9999999 must not read 07:00, which is no longer quiet.
    whole = math.floor(moment)
    clock = datetime.datetime.fromtimestamp(whole, zone)
    now = (clock.hour * 60 + clock.minute) * 60 + clock.second + (moment - whole)
    start, end = quiet.start * 60, quiet.end * 60
    return start <= now < end if start < end else now >= start or now < end


def quiet_ends(moment: float, quiet: QuietHours, zone: zoneinfo.ZoneInfo) -> float:
    """The next instant after ``moment`` at which the window ends (quiet, then not)."""
    today = datetime.datetime.fromtimestamp(moment, zone).date()
    hour, minute = divmod(quiet.end, 60)
    candidates = sorted(
        instant
        for offset in range(3)
        for instant in wall_instants(today + datetime.timedelta(days=offset), hour, minute, zone)
    )
    for instant in candidates:
        # An end is where quiet stops. A fall-back night reads the end time twice, and may
        # be quiet again in between; an end time that did not exist that day ends the window
        # when the clocks jump, unless they jumped into it.
        if (
            instant > moment
            and is_quiet(instant - 1, quiet, zone)
            and not is_quiet(instant, quiet, zone)
        ):
            return instant
    raise AssertionError("a quiet window ends within a day")  # pragma: no cover


def _minutes(hour: int, minute: int) -> int:
    return hour * 60 + minute


def _clock(minutes: int) -> str:
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}"
