"""The group's pending entries, as one consumer sees them.

An entry stays pending from its delivery until it is acknowledged; the stream counts its
deliveries, which is how a poison update is told from one that met a passing outage.
Here are the operations on that list a consumer needs: claim entries idle long enough,
give entries back (still pending, the delivery not counted, claimable sooner), touch the
entries in hand so nobody claims them, and tell which entries are still pending.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from newsbot import keys

logger = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]

# Extend the locks among KEYS that ARGV[1] still holds to ARGV[2] ms (0: delete them).
_RENEW = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        if ARGV[2] == '0' then redis.call('DEL', key) else redis.call('PEXPIRE', key, ARGV[2]) end
    end
end
return 0
"""


@dataclass
class Item:
    """A stream entry in hand, with how often the stream has delivered it."""

    entry_id: str
    fields: dict[str, str]
    tries: int = 1

    @property
    def update_id(self) -> str:
        return self.fields.get("update_id", "")

    @property
    def chat(self) -> str:
        return self.fields.get("chat_id", "0")

    @property
    def after_entry(self) -> str:
        """The stream entry of the chat's previous update ("" if none or not known)."""
        return self.fields.get("after_entry", "")

    @property
    def lock_key(self) -> str:
        return keys.UPDATE_LOCK.format(update_id=self.update_id)


class PendingList:
    """The pending entries of the update stream's group, for the consumer ``name``."""

    def __init__(self, redis: aioredis.Redis, name: str, claim_idle_ms: int) -> None:
        self.redis = redis
        self.name = name
        self.claim_idle_ms = claim_idle_ms
        self._renew = redis.register_script(_RENEW)
        self._claim_from = "-"

    async def claim(self, count: int) -> list[Item]:
        """Claim entries idle long enough (their consumer died, or gave them back)."""
        # Each round goes on from where the last one stopped, so that the idle entries
        # of a flooding chat, given back again and again, cannot keep the others from
        # ever being claimed.
        pending = await self.redis.xpending_range(
            keys.UPDATES, keys.GROUP, self._claim_from, "+", count=count, idle=self.claim_idle_ms
        )
        self._claim_from = "-" if len(pending) < count else "(" + str(pending[-1]["message_id"])
        if not pending:
            return []
        tries = {entry["message_id"]: int(entry["times_delivered"]) + 1 for entry in pending}
        claimed: list[Entry] = await self.redis.xclaim(  # type: ignore[assignment]
            keys.UPDATES,
            keys.GROUP,
            self.name,
            min_idle_time=self.claim_idle_ms,
            message_ids=list[Any](tries),
        )
        items = [
            Item(entry_id, fields, max(2, tries.get(entry_id, 2)))
            for entry_id, fields in claimed
            if fields
        ]
        if items:
            logger.info("claimed %d updates left by another consumer", len(items))
        return items

    async def give_back(
        self, items: list[Item], sooner_ms: int, release_locks: bool = False
    ) -> None:
        """Leave entries pending, claimable ``sooner_ms`` early, their delivery uncounted."""
        by_tries: dict[int, list[str]] = {}
        for item in items:
            by_tries.setdefault(item.tries, []).append(item.entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for tries, entry_ids in by_tries.items():
                pipe.xclaim(
                    keys.UPDATES,
                    keys.GROUP,
                    self.name,
                    min_idle_time=0,
                    message_ids=list[Any](entry_ids),
                    idle=sooner_ms,
                    retrycount=tries - 1,
                    justid=True,
                )
            if release_locks:
                await self._renew(
                    keys=[item.lock_key for item in items], args=[self.name, 0], client=pipe
                )
            await pipe.execute()

    async def touch(self, items: list[Item], lock_ms: int) -> None:
        """Reset the entries' idle time and renew the locks we hold on their updates."""
        await self.redis.xclaim(
            keys.UPDATES,
            keys.GROUP,
            self.name,
            min_idle_time=0,
            message_ids=[item.entry_id for item in items],
            justid=True,
        )
        await self._renew(keys=[item.lock_key for item in items], args=[self.name, lock_ms])

    async def release_lock(self, item: Item) -> None:
        """Drop our lock on an entry's update, if we still hold it."""
        await self._renew(keys=[item.lock_key], args=[self.name, 0])

    async def still_pending(self, entry_ids: list[str]) -> set[str]:
        """The entries among these that are still pending (read, not acknowledged)."""
        if not entry_ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(keys.UPDATES, keys.GROUP, entry_id, entry_id, 1)
            answers = await pipe.execute()
        return {entry_id for entry_id, found in zip(entry_ids, answers, strict=False) if found}
