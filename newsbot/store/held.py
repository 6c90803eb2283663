"""Messages held during a chat's quiet hours: a list per chat (``keys.HELD``, at most
``keys.HELD_MAX``), due when the quiet hours end (``keys.QUIET_END``, a sorted set
replicas claim from as they claim digests).

A replica that delivered some of them drops just those, so messages held meanwhile
stay and a replica that died mid-way leaves the rest to the next one.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsbot import keys
from newsbot.store.base import StoreBase


class HeldStore(StoreBase):
    """Messages kept for a chat until its quiet hours end."""

    async def hold(self, chat_id: int, messages: Sequence[str], until: float) -> None:
        """Keep messages for the chat until ``until`` (its quiet hours end), durably."""
        if not messages:
            return
        held = keys.HELD.format(chat_id=chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(held, *messages)
            pipe.ltrim(held, -keys.HELD_MAX, -1)
            pipe.zadd(keys.QUIET_END, {str(chat_id): until})
            await pipe.execute()

    async def claim_quiet_ends(
        self, now: float, limit: int, hold: float = keys.DIGEST_CLAIM_SECONDS
    ) -> list[int]:
        """Take up to ``limit`` chats whose quiet hours ended with messages held.

        As with ``claim_due``, no other replica gets them; a claimed chat comes back
        ``hold`` seconds later unless its messages were released.
        """
        chats = await self._claim_due(keys=[keys.QUIET_END], args=[now, hold, limit])
        return [int(chat) for chat in chats]

    async def held(self, chat_id: int) -> list[str]:
        """The messages held for the chat, oldest first."""
        messages: list[str] = await self.redis.lrange(  # type: ignore[assignment]
            keys.HELD.format(chat_id=chat_id), 0, -1
        )
        return messages

    async def release_held(self, chat_id: int, count: int) -> int:
        """Forget the first ``count`` held messages (delivered); return how many are left."""
        left = await self._release_held(
            keys=[keys.HELD.format(chat_id=chat_id), keys.QUIET_END], args=[chat_id, count]
        )
        return int(left)

    async def reschedule_held(self, chat_id: int, due: float) -> None:
        """Move when the chat's held messages are due, if it has any."""
        await self.redis.zadd(keys.QUIET_END, {str(chat_id): due}, xx=True)

    async def held_due(self, chat_id: int) -> float | None:
        """When the chat's held messages are due, None if nothing is held."""
        return await self.redis.zscore(keys.QUIET_END, chat_id)
