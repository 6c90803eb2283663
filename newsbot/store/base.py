"""What every part of the store shares: the Redis client, the Lua scripts registered on
it, closing it, telling whether Redis takes writes (readiness), and the key names and
members more than one part writes (a chat's hash, the index source -> chats, an item
id as a seen history stores it).

``Store`` (newsbot/store/__init__.py) is one class made of the parts; each part
inherits this base, so ``self.redis`` and the scripts are the same for all of them.
"""

from __future__ import annotations

import hashlib
import json

import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from newsbot import keys
from newsbot.store.scripts import (
    _CLAIM_DUE,
    _DROP_ALERT_SOURCE,
    _DROP_FIELD,
    _FORGET_WATCHER,
    _MARK_SEEN,
    _RELEASE,
    _RELEASE_HELD,
)


class StoreBase:
    """The Redis client and the scripts the parts of ``Store`` run on it."""

    def __init__(self, redis: aioredis.Redis, items_per_source: int = 5) -> None:
        self.redis = redis
        # What one /fetch or digest shows of a source: the unit of the seen history.
        self.items_per_source = items_per_source
        self._claim_due = redis.register_script(_CLAIM_DUE)
        self._mark_seen = redis.register_script(_MARK_SEEN)
        self._release = redis.register_script(_RELEASE)
        self._drop_field = redis.register_script(_DROP_FIELD)
        self._release_held = redis.register_script(_RELEASE_HELD)
        self._drop_alert_source = redis.register_script(_DROP_ALERT_SOURCE)
        self._forget_watcher = redis.register_script(_FORGET_WATCHER)

    async def close(self) -> None:
        await self.redis.aclose()
        manager = getattr(self.redis.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()  # its own connections to the sentinels

    async def ping(self) -> bool:
        """Tell whether Redis answers."""
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def write_problem(self) -> str | None:
        """Why Redis cannot take the bot's writes now, or None when it can (readiness).

        Out of memory is told apart from unreachable: Redis at ``maxmemory`` with the
        noeviction policy answers reads and refuses every write.
        """
        try:
            await self.redis.set(keys.READY_PROBE, "1", px=keys.READY_PROBE_MS)
        except OutOfMemoryError as error:
            # redis-py drops the "OOM" of Redis' answer; said again, it is recognisable.
            return f"Redis is out of memory: OOM {str(error).rstrip('.')}"
        except ResponseError as error:
            return f"Redis refuses writes: {error}"  # e.g. READONLY: a replica, not the master
        except MasterNotFoundError:
            # Before RedisError: it is a ConnectionError, but the cure differs (sentinels).
            return "Redis Sentinel names no master (a failover under way, or no sentinel answers)"
        except (RedisError, OSError):
            return "Redis does not answer"
        return None


def _chat(chat_id: int) -> str:
    return keys.CHAT.format(chat_id=chat_id)


def feed_digest(key: str) -> str:
    """The part of a source's keys that names it: a hash of its canonical name."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _source_chats(key: str) -> str:
    return keys.SOURCE_CHATS.format(digest=feed_digest(key))


def _source_keys(raw: str | None) -> set[str]:
    """The keys of the sources in a chat hash's ``sources`` field."""
    try:
        return {data["key"] for data in json.loads(raw)} if raw else set()
    except (ValueError, KeyError, TypeError):
        return set()  # written by another version: nothing to index


def _seen_member(item_id: str) -> str:
    """An item id as the seen history stores it: 16 hex digits, whatever its length.

    Feed ids are often long URLs; above 64 bytes a member alone would move the set to
    Redis' large encoding. 64 bits of SHA-256 make a collision among a chat's few hundred
    entries a chance of about one in 10^14.
    """
    return hashlib.sha256(item_id.encode()).hexdigest()[:16]
