"""Source health as the cluster shares it: the set of failing sources (for the metric)
and the notices queued for the chats of a source that died or came back.

A notice is a hash (``keys.SOURCE_NOTICE``) due in ``keys.SOURCE_NOTICES``; replicas
claim notices as they claim digests, and the chats told so far are a set beside it, so
a notice claimed again after a replica died is not sent to a chat twice.
"""

from __future__ import annotations

from newsbot import keys
from newsbot.store.base import StoreBase
from newsbot.store.cache import CachedNews


class NoticeStore(StoreBase):
    """Failing sources and the dead/recovered notices to their chats."""

    async def note_source_health(
        self, digest: str, key: str, entry: CachedNews, transition: str | None, notice: str | None
    ) -> None:
        """Count a source as failing or not, and queue its chats' notice of a transition.

        ``notice`` is the transition's id (source_health.notice_id): queued twice, it is
        one notice.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            if entry.error is None:
                pipe.zrem(keys.FAILING, digest)
            else:
                pipe.zadd(keys.FAILING, {digest: entry.fetched_at})
            if transition is not None and notice is not None:
                record = keys.SOURCE_NOTICE.format(notice=notice)
                pipe.hset(
                    record,
                    mapping={
                        "key": key,
                        "kind": transition,
                        "reason": entry.error or "",
                        "since": repr(entry.failing_since or entry.fetched_at),
                    },
                )
                pipe.expire(record, keys.SOURCE_NOTICE_SECONDS)
                pipe.zadd(keys.SOURCE_NOTICES, {notice: entry.fetched_at}, nx=True)
            await pipe.execute()

    async def count_failing(self, now: float) -> int:
        """How many sources fail now (forgetting those nobody asked for in a long while)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(keys.FAILING, "-inf", now - keys.FAILING_FORGET_SECONDS)
            pipe.zcard(keys.FAILING)
            _, count = await pipe.execute()
        return int(count)

    async def claim_source_notices(
        self, now: float, limit: int, hold: float = keys.DIGEST_CLAIM_SECONDS
    ) -> list[str]:
        """Take up to ``limit`` source notices to send; no other replica gets them.

        As with ``claim_due``, a claimed notice comes back ``hold`` seconds later unless
        it was done.
        """
        found = await self._claim_due(keys=[keys.SOURCE_NOTICES], args=[now, hold, limit])
        return [str(notice) for notice in found]

    async def get_source_notice(self, notice: str) -> dict[str, str]:
        """What a source notice says: key, kind, reason, since ({} once it is stale)."""
        data: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            keys.SOURCE_NOTICE.format(notice=notice)
        )
        return data

    async def told_of_notice(self, notice: str) -> set[int]:
        """The chats a source notice was sent to."""
        members = await self.redis.smembers(keys.SOURCE_NOTICE_TOLD.format(notice=notice))
        return {int(member) for member in members}

    async def mark_told_of_notice(self, notice: str, chat_id: int) -> None:
        """Remember that a chat was sent a source notice."""
        key = keys.SOURCE_NOTICE_TOLD.format(notice=notice)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, chat_id)
            pipe.expire(key, keys.SOURCE_NOTICE_SECONDS)
            await pipe.execute()

    async def done_source_notice(self, notice: str) -> None:
        """Forget a notice every chat was sent."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.SOURCE_NOTICES, notice)
            pipe.delete(keys.SOURCE_NOTICE.format(notice=notice))
            await pipe.execute()
