"""The dead-letter stream: poison updates set aside, once, for an operator to look at.

An update that cannot be parsed, that makes its handler fail, or that was delivered too
often without success is copied here with the reason, marked done and acknowledged in
one script, so no claim, duplicate entry or restart brings it back. The stream lives a
week past the last update added (keys.DEAD_UPDATES_SECONDS) and is bounded in length.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from newsbot import keys
from newsbot.metrics import DEAD_UPDATES, UPDATES

logger = logging.getLogger(__name__)

# KEYS: done mark, lock, update stream, dead-letter stream. ARGV: entry id, group,
# consumer, done TTL, dead-letter MAXLEN and TTL, then the update id, chat id, reason,
# deliveries and update JSON. Returns 1 if it was set aside, 0 if it had been handled
# already (then it is only acknowledged).
_BURY = """
local buried = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'update_id', ARGV[7],
               'chat_id', ARGV[8], 'reason', ARGV[9], 'deliveries', ARGV[10],
               'update', ARGV[11])
    redis.call('EXPIRE', KEYS[4], ARGV[6])
    redis.call('SET', KEYS[1], 'dead', 'EX', ARGV[4])
    buried = 1
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('XACK', KEYS[3], ARGV[2], ARGV[1])
return buried
"""

REASON_MAX_CHARS = 1000


class DeadLetters:
    """Sets poison updates aside on behalf of one consumer of the group."""

    def __init__(self, redis: aioredis.Redis, consumer: str) -> None:
        self.consumer = consumer
        self._bury = redis.register_script(_BURY)

    async def bury(
        self,
        entry_id: str,
        fields: dict[str, str],
        deliveries: int,
        reason: str,
        kind: str,
        log: bool = True,
    ) -> bool:
        """Move an update to the dead-letter stream and acknowledge it; False if done."""
        update_id = fields.get("update_id", "")
        buried = await self._bury(
            keys=[
                keys.UPDATE_DONE.format(update_id=update_id),
                keys.UPDATE_LOCK.format(update_id=update_id),
                keys.UPDATES,
                keys.DEAD_UPDATES,
            ],
            args=[
                entry_id,
                keys.GROUP,
                self.consumer,
                keys.UPDATE_DONE_SECONDS,
                keys.DEAD_UPDATES_MAXLEN,
                keys.DEAD_UPDATES_SECONDS,
                update_id,
                fields.get("chat_id", "0"),
                reason[:REASON_MAX_CHARS],
                deliveries,
                fields.get("update", ""),
            ],
        )
        if not buried:
            return False
        UPDATES.labels(outcome="dead").inc()
        DEAD_UPDATES.labels(reason=kind).inc()
        if log:
            logger.error(
                "update %s set aside in %s (delivered %d times): %s",
                update_id,
                keys.DEAD_UPDATES,
                deliveries,
                reason[:200],
            )
        return True
