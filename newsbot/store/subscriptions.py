"""A chat's digest: its interval or local schedule (fields of the chat's hash) and when
it is next due (``keys.DUE``, a sorted set replicas claim from), and the chat's clock it
runs on: its time zone and quiet hours.
"""

from __future__ import annotations

import zoneinfo

from newsbot import keys
from newsbot.quiet import QuietHours, parse_quiet
from newsbot.schedule import (
    LocalSchedule,
    Schedule,
    ScheduleError,
    parse_local_schedule,
    parse_zone,
)
from newsbot.store.base import StoreBase, _chat
from newsbot.store.delivery import digest_scope

UTC = zoneinfo.ZoneInfo("UTC")


class SubscriptionStore(StoreBase):
    """A chat's digest schedule and due time, its zone and quiet hours."""

    async def subscribe(
        self, chat_id: int, interval: int, first_due: float, local: LocalSchedule | None = None
    ) -> None:
        """Send the chat a digest every ``interval`` seconds, the first at ``first_due``.

        With ``local``, the digest follows the chat's clock instead (``interval`` is its
        nominal day or week, which a replica without local schedules still understands).
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_chat(chat_id), "interval", interval)
            if local is None:
                pipe.hdel(_chat(chat_id), "schedule")
            else:
                pipe.hset(_chat(chat_id), "schedule", local.text)
            pipe.zadd(keys.DUE, {str(chat_id): first_due})
            await pipe.execute()

    async def unsubscribe(self, chat_id: int) -> bool:
        """Stop the chat's digest; tell whether it had one."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(_chat(chat_id), "interval", "schedule")
            pipe.zrem(keys.DUE, chat_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def get_interval(self, chat_id: int) -> int | None:
        """The chat's digest interval in seconds, or None without a subscription."""
        value = await self.redis.hget(_chat(chat_id), "interval")
        return int(value) if value else None

    async def get_schedule(self, chat_id: int) -> Schedule | None:
        """The chat's digest schedule (an interval or a local time), None without one."""
        values: list[str | None] = await self.redis.hmget(  # type: ignore[assignment]
            _chat(chat_id), ["interval", "schedule"]
        )
        interval, local = values
        if not interval:
            return None
        if local:
            try:
                return parse_local_schedule(local)
            except ScheduleError:
                pass  # written by another version: its nominal interval still works
        return int(interval)

    async def claim_due(
        self, now: float, limit: int, hold: float = keys.DIGEST_CLAIM_SECONDS
    ) -> list[int]:
        """Take up to ``limit`` chats whose digest is due; no other replica gets them.

        A claimed chat comes back ``hold`` seconds later unless it was rescheduled.
        """
        chats = await self._claim_due(keys=[keys.DUE], args=[now, hold, limit])
        return [int(chat) for chat in chats]

    async def due_before(self, until: float, limit: int) -> list[int]:
        """Up to ``limit`` chats whose digest is due before ``until`` (claimed or not)."""
        chats: list[str] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.DUE, "-inf", until, start=0, num=limit
        )
        return [int(chat) for chat in chats]

    async def reschedule(self, chat_id: int, due: float) -> None:
        """Set when the chat's next digest is due, if it is still subscribed."""
        # XX: never re-add a chat that unsubscribed while its digest was being sent.
        await self.redis.zadd(keys.DUE, {str(chat_id): due}, xx=True)

    async def digest_done(self, chat_id: int, due: float) -> None:
        """Schedule the chat's next digest after one went out (or had nothing new).

        No retry of that digest comes after this, so the record of its parts Telegram
        took (keys.PARTS_SENT) goes with it, in one transaction: otherwise every digest
        within the record's hour would add its parts to it.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.DUE, {str(chat_id): due}, xx=True)
            pipe.delete(keys.PARTS_SENT.format(scope=digest_scope(chat_id)))
            await pipe.execute()

    async def next_due(self, chat_id: int) -> float | None:
        """When the chat's next digest is due."""
        return await self.redis.zscore(keys.DUE, chat_id)

    # --- the chat's clock --------------------------------------------------------------

    async def get_zone(self, chat_id: int) -> zoneinfo.ZoneInfo:
        """The chat's time zone (UTC unless it set one with /tz)."""
        name: str | None = await self.redis.hget(  # type: ignore[assignment]
            _chat(chat_id), "zone"
        )
        return _zone(name)

    async def set_zone(self, chat_id: int, zone: zoneinfo.ZoneInfo) -> None:
        """Set the chat's time zone."""
        await self.redis.hset(_chat(chat_id), "zone", zone.key)

    async def get_quiet(self, chat_id: int) -> QuietHours | None:
        """The chat's quiet hours, None without."""
        text: str | None = await self.redis.hget(  # type: ignore[assignment]
            _chat(chat_id), "quiet"
        )
        return _quiet(text)

    async def set_quiet(self, chat_id: int, quiet: QuietHours | None) -> None:
        """Set the chat's quiet hours, or end them with None."""
        if quiet is None:
            await self.redis.hdel(_chat(chat_id), "quiet")
        else:
            await self.redis.hset(_chat(chat_id), "quiet", quiet.text)

    async def get_clock(self, chat_id: int) -> tuple[zoneinfo.ZoneInfo, QuietHours | None]:
        """The chat's time zone and quiet hours, read at once."""
        values: list[str | None] = await self.redis.hmget(  # type: ignore[assignment]
            _chat(chat_id), ["zone", "quiet"]
        )
        zone, quiet = values
        return _zone(zone), _quiet(quiet)


def _zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return parse_zone(name) if name else UTC
    except ScheduleError:
        return UTC  # a zone this tz database lacks (written by a newer one): UTC


def _quiet(text: str | None) -> QuietHours | None:
    try:
        return parse_quiet(text) if text else None
    except ScheduleError:
        return None  # written by another version: no quiet hours rather than a failure
