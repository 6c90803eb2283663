"""The items a chat was sent: one small sorted set per chat (``keys.SEEN``) with a
time-to-live, so /fetch and digests show only what is new to the chat.

Members are hashes of the item ids (``_seen_member``), and the history keeps what the
chat can be shown in a few rounds, within Redis' compact encoding (``keys.SEEN_*``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from newsbot import keys
from newsbot.store.base import StoreBase, _chat, _seen_member


class SeenStore(StoreBase):
    """What each chat was sent already."""

    async def unseen(self, chat_id: int, item_ids: Sequence[str]) -> set[str]:
        """The ids among ``item_ids`` this chat has not been sent yet."""
        if not item_ids:
            return set()
        key = keys.SEEN.format(chat_id=chat_id)
        ids = list(item_ids)
        # The raw ids too: a history written before ids were hashed still counts (its
        # entries are the oldest and leave first).
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zmscore(key, [_seen_member(item_id) for item_id in ids] + ids)
            pipe.expire(key, keys.SEEN_TTL_SECONDS)
            scores, _ = await pipe.execute()
        hashed, raw = scores[: len(ids)], scores[len(ids) :]
        return {
            item_id for item_id, mine, old in zip(ids, hashed, raw) if mine is None and old is None
        }

    async def mark_seen(self, chat_id: int, item_ids: Iterable[str]) -> int:
        """Remember items as sent to this chat; return how many the history keeps.

        The history holds what the chat can be shown in a few rounds (its sources ×
        items per source × SEEN_ROUNDS, at least SEEN_MIN), within Redis' compact
        encoding (SEEN_COMPACT) unless a single round is bigger; the oldest go first.
        """
        members = list(dict.fromkeys(_seen_member(item_id) for item_id in item_ids))
        if not members:
            return 0
        kept = await self._mark_seen(
            keys=[keys.SEEN.format(chat_id=chat_id), _chat(chat_id)],
            args=[
                int(time.time() * 1000),
                self.items_per_source,
                keys.SEEN_ROUNDS,
                keys.SEEN_MIN,
                keys.SEEN_COMPACT,
                keys.SEEN_TTL_SECONDS,
                *members,
            ],
        )
        return int(kept)
