"""A lease in Redis: at most one holder at a time, renewed and released only by it."""

from __future__ import annotations

import redis.asyncio as aioredis

# Take the lease if it is free, or extend it if we hold it; 1 if we hold it afterwards.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """A named lease held by ``owner`` for ``ttl_ms`` at a time."""

    def __init__(self, redis: aioredis.Redis, key: str, owner: str, ttl_ms: int) -> None:
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)

    async def hold(self) -> bool:
        """Take or renew the lease; tell whether we hold it now."""
        return bool(await self._hold(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> None:
        """Give the lease up at once, if we hold it, so a successor need not wait."""
        await self._release(keys=[self.key], args=[self.owner])
