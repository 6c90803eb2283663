"""Source health: how long a failing source is left alone, and what its chats are told.

Pure functions. A source's failure streak (failed fetches in a row, since when, whether
its chats were told it is dead) rides in its cache entry (``store.CachedNews``): the one
replica that fetched a source works out the next streak with ``follow`` under the fetch
lock, so each transition (dead, recovered) is seen exactly once. ``retry_after`` says how
long an entry with an error answers every ask, so a dead server is asked less and less
often: the first failure briefly (it is often a blip), then ``NEWSBOT_CACHE_TTL``,
doubling with each failure up to 6 hours.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from collections.abc import Sequence
from typing import Literal

from newsbot import keys, render, schedule
from newsbot.store import CachedNews

# The longest a failing source is left alone; a working one is fetched every cache TTL.
MAX_BACKOFF_SECONDS = 6 * 3600
# Past this, 2**n only overflows the arithmetic: the cap was reached long before.
_MAX_DOUBLINGS = 32

Transition = Literal["dead", "recovered"]
DEAD: Transition = "dead"
RECOVERED: Transition = "recovered"


def retry_after(failures: int, cache_ttl: int, first: int = keys.ERROR_TTL_SECONDS) -> int:
    """Seconds a source that failed ``failures`` times in a row answers from that failure.

    One failure: ``first`` (at most the TTL), as a blip is usual. Then the TTL, doubling
    with each failure, up to 6 hours (or the TTL, when that is longer: a failing source is
    never asked more often than a working one).
    """
    if failures <= 1:
        return min(cache_ttl, first)
    doublings = min(failures - 2, _MAX_DOUBLINGS)
    return min(cache_ttl << doublings, max(cache_ttl, MAX_BACKOFF_SECONDS))


def follow(
    previous: CachedNews | None, fetched: CachedNews, dead_after: float
) -> tuple[CachedNews, Transition | None]:
    """The entry to store after a fetch, with its streak, and the transition it made.

    ``previous`` is the entry before the fetch. A source becomes dead once it has failed
    for ``dead_after`` seconds, and recovers when a dead one answers; either happens once.
    """
    if fetched.error is None:
        recovered = previous is not None and previous.error is not None and previous.dead
        return fetched, RECOVERED if recovered else None
    failing = previous is not None and previous.error is not None
    if previous is not None and failing:
        # An entry of a version without streaks counts as one failure, from its fetch.
        failures = max(previous.failures, 1) + 1
        since = previous.failing_since or previous.fetched_at
        dead = previous.dead
    else:
        failures, since, dead = 1, fetched.fetched_at, False
    transition: Transition | None = None
    if not dead and fetched.fetched_at - since >= dead_after:
        dead, transition = True, DEAD
    entry = dataclasses.replace(fetched, failures=failures, failing_since=since, dead=dead)
    return entry, transition


def notice_id(digest: str, transition: Transition, since: float) -> str:
    """The id of one transition's notice: the same transition always gives the same id."""
    return f"{digest}:{transition}:{since!r}"


def listing_mark(entry: CachedNews | None, zone: zoneinfo.ZoneInfo) -> str:
    """What the /source listing adds after a failing source ('' for a working one)."""
    if entry is None or entry.error is None:
        return ""
    since = entry.failing_since or entry.fetched_at
    return (
        f" ⚠️ {render.escape(entry.error)} (failing since "
        f"{schedule.describe_local_time(since, zone)})"
    )


def dead_notice(label: str, reason: str, since: float, zone: zoneinfo.ZoneInfo) -> str:
    """The message a chat gets when one of its sources has failed for too long."""
    name = render.escape(render.shorten(label, render.MAX_TITLE))
    return (
        f"⚠️ <b>{name}</b> has not answered since "
        f"{schedule.describe_local_time(since, zone)}: {render.escape(reason)}.\n"
        f"I keep trying, less often, and tell you when it answers again. "
        f"To drop it: /remove {name}"
    )


def recovered_notice(label: str) -> str:
    """The message a chat gets when a source it was told is dead answers again."""
    name = render.escape(render.shorten(label, render.MAX_TITLE))
    return f"✅ <b>{name}</b> answers again: its news is back in /fetch and your digests."


def failed_line(labels: Sequence[str]) -> str:
    """The last line of a digest, naming the sources that failed (the first few)."""
    return f"⚠️ <i>Failed, not in this digest: {render.escape(render.also_names(labels))}</i>"


def with_failed_line(messages: Sequence[str], labels: Sequence[str]) -> list[str]:
    """A digest's messages ending with the failed-sources line (unchanged with none)."""
    if not labels:
        return list(messages)
    line = failed_line(labels)  # short: also_names names at most five, each cut short
    if messages and len(messages[-1]) + 2 + len(line) <= render.MESSAGE_LIMIT:
        return [*messages[:-1], messages[-1] + "\n\n" + line]
    return [*messages, line]
