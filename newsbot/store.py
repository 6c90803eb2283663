"""Newsbot's state in Redis: chats, sources, subscriptions, seen items, messages held in
quiet hours and the fetch cache.

Every Redis command about chats and news lives here (the cluster modules keep their own
keys). Each chat is one hash, so a chat's settings move or vanish together; its seen
history is one small sorted set with a time-to-live, and ``forget_chat`` deletes every
key of a chat (``keys.CHAT_KEYS``).

The client waits for a free connection rather than failing when its pool is busy: a
burst of work is queued, not mistaken for an outage (``pool_size`` says how big).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError, WatchError

from newsbot import filters, keys, metrics, redis_url
from newsbot.config import Settings
from newsbot.models import Delivery, Item, Source
from newsbot.quiet import QuietHours, parse_quiet
from newsbot.schedule import (
    LocalSchedule,
    Schedule,
    ScheduleError,
    parse_local_schedule,
    parse_zone,
)

UTC = zoneinfo.ZoneInfo("UTC")

logger = logging.getLogger(__name__)

# How long a command waits for a free connection of a busy pool before it fails (and
# the bot treats Redis as unreachable): as long as a command may take on the wire.
POOL_WAIT_SECONDS = 10.0
# Connections for the loops beside the work: the poller's long poll and lease, the
# consumer's read, touch and claim, the readiness check, the digest claim and prefetch.
LOOP_CONNECTIONS = 8

# Claim the digests that are due: move each from "due now" to "being sent" in one step,
# so two replicas never take the same one. ARGV: now, claim seconds, max count.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local hold_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, chat in ipairs(due) do
    redis.call('ZADD', KEYS[1], hold_until, chat)
end
return due
"""

# Remember items as sent, keeping the history within what the chat can be shown.
# KEYS: seen set, chat hash. ARGV: now (ms), items per source, rounds, floor, compact
# size, time-to-live (s), then the members. Room is made before the new members go in,
# so a set at its bound never grows past it (Redis would convert a listpack set to the
# large encoding for good); members sent again move to the newest end.
_MARK_SEEN = """
local key = KEYS[1]
local raw = redis.call('HGET', KEYS[2], 'sources')
local sources = 0
if raw then sources = #cjson.decode(raw) end
local per_round = sources * tonumber(ARGV[2])
local batch = #ARGV - 6
local keep = math.max(tonumber(ARGV[4]), per_round, batch,
                      math.min(per_round * tonumber(ARGV[3]), tonumber(ARGV[5])))
-- Each batch strictly newer than the last, whatever the clocks of the replicas say.
local now = tonumber(ARGV[1])
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= now then now = tonumber(newest[2]) + 1 end
local fresh = {}
for i = 7, #ARGV do
    if redis.call('ZSCORE', key, ARGV[i]) then
        redis.call('ZADD', key, now, ARGV[i])
    else
        fresh[#fresh + 1] = ARGV[i]
    end
end
local excess = redis.call('ZCARD', key) + #fresh - keep
if excess > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, excess - 1)
end
for _, member in ipairs(fresh) do
    redis.call('ZADD', key, now, member)
end
-- A history written by an older version (or before a chat dropped sources) may sit in
-- the large encoding although it is small now: written anew, it is compact again.
local ok, encoding = pcall(redis.call, 'OBJECT', 'ENCODING', key)
if ok and encoding == 'skiplist' and redis.call('ZCARD', key) <= tonumber(ARGV[5]) then
    local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    redis.call('DEL', key)
    for i = 1, #entries, 2 do
        redis.call('ZADD', key, entries[i + 1], entries[i])
    end
end
redis.call('EXPIRE', key, ARGV[6])
return keep
"""

# Delete a hash field only if it still has the value given. KEYS: hash. ARGV: field, value.
_DROP_FIELD = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# Drop the held messages a replica delivered, and the chat's quiet end with the last of
# them; messages held meanwhile stay, due at the end their hold set. KEYS: held list, quiet
# end set. ARGV: chat id, how many were delivered. Returns how many are left.
_RELEASE_HELD = """
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return left
"""

# Stop checking a source no chat watches any more; not if a chat began watching it
# meanwhile. KEYS: watchers set, checks set, sources hash. ARGV: digest.
_DROP_ALERT_SOURCE = """
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# Drop a chat from a source's watchers unless it watches it again by now (/alert off,
# then /alert, while a check looked). KEYS: the chat's alerts hash, the watchers set.
# ARGV: digest, chat id.
_FORGET_WATCHER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
return redis.call('SREM', KEYS[2], ARGV[2])
"""

# Release a lock only if we still hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclasses.dataclass(frozen=True)
class CachedNews:
    """A source's last fetch: items or an error, when, and validators for the next GET."""

    fetched_at: float
    items: tuple[Item, ...] = ()
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    # The feed a web page links to (feed discovery), and where a feed moved permanently
    # (a 301/308): what /source and /add store instead of the URL given.
    discovered: str | None = None
    moved_to: str | None = None
    # The failure streak (source_health): failed fetches in a row, when the first of
    # them was, and whether the source's chats were told it is dead.
    failures: int = 0
    failing_since: float | None = None
    dead: bool = False

    def to_mapping(self) -> dict[str, str]:
        mapping = {
            "fetched_at": repr(self.fetched_at),
            "items": json.dumps([item.to_json() for item in self.items]),
            "error": self.error or "",
            "etag": self.etag or "",
            "last_modified": self.last_modified or "",
            "failures": str(self.failures),
            "failing_since": "" if self.failing_since is None else repr(self.failing_since),
            "dead": "1" if self.dead else "",
        }
        # Only when set: an entry without them is written exactly as before.
        if self.discovered:
            mapping["discovered"] = self.discovered
        if self.moved_to:
            mapping["moved_to"] = self.moved_to
        return mapping

    @classmethod
    def from_mapping(cls, data: dict[str, str]) -> CachedNews:
        return cls(
            fetched_at=float(data["fetched_at"]),
            items=tuple(Item.from_json(item) for item in json.loads(data["items"])),
            error=data.get("error") or None,
            etag=data.get("etag") or None,
            last_modified=data.get("last_modified") or None,
            discovered=data.get("discovered") or None,
            moved_to=data.get("moved_to") or None,
            # Absent in entries written before streaks were kept: no streak yet.
            failures=int(data.get("failures") or 0),
            failing_since=float(data["failing_since"]) if data.get("failing_since") else None,
            dead=data.get("dead") == "1",
        )


def pool_size(updates_in_flight: int, digest_slots: int, downloads: int) -> int:
    """Connections one replica needs so that its work never waits for a connection.

    ``updates_in_flight + digest_slots + downloads + LOOP_CONNECTIONS``: each update in
    hand, digest being built (or source being prefetched) and download finishing (it
    stores its result and drops its lock) uses one connection at a time, and the loops
    beside them a few more. More concurrent commands than that wait for a connection
    (``POOL_WAIT_SECONDS`` at most): a burst is slowed, never failed.
    """
    return updates_in_flight + digest_slots + downloads + LOOP_CONNECTIONS


def connect(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """A Redis client for REDIS_URL, or the embedded in-process store without one.

    Its pool holds at most ``max_connections`` connections and, when all are busy, a
    command waits for one (``BlockingConnectionPool``) instead of raising.
    """
    if settings.redis_url and redis_url.is_sentinel(settings.redis_url):
        return _sentinel_client(redis_url.parse(settings.redis_url), max_connections)
    if settings.redis_url:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=max_connections,
            timeout=POOL_WAIT_SECONDS,
            decode_responses=True,
            health_check_interval=15,
            socket_timeout=10,
            socket_connect_timeout=5,
        )
        return aioredis.Redis.from_pool(pool)
    import fakeredis  # only needed for the embedded default

    logger.info(
        "REDIS_URL is not set: using an embedded in-process store; "
        "state is lost when the bot stops and replicas cannot share it"
    )
    return fakeredis.FakeAsyncRedis(decode_responses=True)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's pool as the sentinels name it, waiting for a free connection as
    ``BlockingConnectionPool`` does (Sentinel's own pool raises when all are busy)."""


# A sentinel that does not answer is skipped for the next one; waiting long on it would
# stretch every lookup of the master during a failover.
SENTINEL_TIMEOUT_SECONDS = 2.0


def _sentinel_client(url: redis_url.SentinelURL, max_connections: int) -> aioredis.Redis:
    """A client of the master the sentinels name, following it through failovers.

    Each new connection asks the sentinels where the master is, and a connection to a
    server that is no longer the master is dropped, so the next command goes to the
    new one: the bot needs no restart.
    """
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels),
        sentinel_kwargs={
            "username": url.sentinel_username,
            "password": url.sentinel_password,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            "decode_responses": True,
        },
    )
    client: aioredis.Redis = sentinel.master_for(
        url.master,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        db=url.db,
        username=url.username,
        password=url.password,
        decode_responses=True,
        health_check_interval=15,
        socket_timeout=10,
        socket_connect_timeout=5,
    )
    return client


async def sentinel_master(redis: aioredis.Redis) -> tuple[str, int] | None:
    """The master's address as the sentinels name it now; None for a plain Redis URL.

    Raises MasterNotFoundError when no sentinel names one (``newsbot check``).
    """
    pool = redis.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
    return str(host), int(port)


async def wait_for_replicas(
    redis: aioredis.Redis, timeout_ms: int, attached: int | None = None
) -> int | None:
    """Wait until a replica has what this connection wrote; how many have (None: none
    is attached, counted in ``newsbot_replica_ack_skipped_total``).

    ``WAIT`` waits for the writes of the connection it runs on, so ``redis`` must be the
    one that wrote: a single-connection client (``async with redis.client() as
    conn``) or a pipeline's connection. 0 means the timeout passed unacknowledged (a
    slow or cut-off replica): the write is on the master and the caller goes on, as it
    would with no replica. With no replica attached ``WAIT`` would only sleep out its
    timeout, so it is not sent. ``attached`` is the number of replicas attached, when
    the caller's own script has read it already (it saves a round trip).
    """
    if attached is None:
        info = await redis.info("replication")
        attached = int(info.get("connected_slaves", 0))
    if not attached:
        metrics.REPLICA_ACK_SKIPPED.inc()
        return None
    acknowledged = int(await redis.wait(1, timeout_ms))
    if not acknowledged:
        metrics.REPLICA_ACK_TIMEOUTS.inc()
    return acknowledged


class Store:
    """Chats, subscriptions, seen items and the fetch cache."""

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

    # --- chats -------------------------------------------------------------------------

    async def get_sources(self, chat_id: int) -> list[Source]:
        """The chat's sources, in the order the user gave them (moved feeds followed)."""
        raw = await self.redis.hget(_chat(chat_id), "sources")
        sources = [Source.from_json(data) for data in json.loads(raw)] if raw else []
        return (await self.follow_moves({chat_id: sources}))[chat_id]

    async def set_sources(self, chat_id: int, sources: Sequence[Source]) -> None:
        """Replace the chat's sources (and keep the index source -> chats in step)."""
        value = json.dumps([source.to_json() for source in sources])
        chat = _chat(chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(chat)
                    raw: str | None = await pipe.hget(chat, "sources")  # type: ignore[assignment]
                    before = _source_keys(raw)
                    after = {source.key for source in sources}
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(chat, "sources", value)
                    for key in before - after:
                        pipe.srem(_source_chats(key), chat_id)
                    for key in after - before:
                        pipe.sadd(_source_chats(key), chat_id)
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # the chat changed meanwhile: read its sources again

    async def is_stopped(self, chat_id: int) -> bool:
        """Tell whether the chat said /stop (and not /start since)."""
        return await self.redis.hget(_chat(chat_id), "stopped") == "1"

    async def set_stopped(self, chat_id: int, stopped: bool) -> None:
        """Silence the chat (and stop its digest), or wake it up."""
        if stopped:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(_chat(chat_id), "stopped", "1")
                pipe.hdel(_chat(chat_id), "interval", "schedule")
                pipe.zrem(keys.DUE, chat_id)
                # Silent means silent: what quiet hours held is not sent later either.
                pipe.delete(keys.HELD.format(chat_id=chat_id))
                pipe.zrem(keys.QUIET_END, chat_id)
                await pipe.execute()
        else:
            await self.redis.hdel(_chat(chat_id), "stopped")

    async def get_filters(self, chat_id: int) -> dict[str, list[filters.Rule]]:
        """The chat's filter rules: source key (or ``*``) -> its rules."""
        raw = await self.redis.hget(_chat(chat_id), "filters")
        try:
            return filters.from_json(json.loads(raw)) if raw else {}
        except ValueError:
            return {}  # unreadable: as if the chat had none, until it sets them again

    async def set_filters(self, chat_id: int, chat_rules: filters.ChatRules) -> None:
        """Replace the chat's filter rules (none left: the field goes)."""
        data = filters.to_json(chat_rules)
        if data:
            await self.redis.hset(_chat(chat_id), "filters", json.dumps(data))
        else:
            await self.redis.hdel(_chat(chat_id), "filters")

    # --- subscriptions -----------------------------------------------------------------

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

    async def sources_of(self, chat_ids: Sequence[int]) -> dict[int, list[Source]]:
        """The sources of many chats, read in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for chat_id in chat_ids:
                pipe.hget(_chat(chat_id), "sources")
            raws = await pipe.execute()
        return await self.follow_moves(
            {
                chat_id: [Source.from_json(data) for data in json.loads(raw)] if raw else []
                for chat_id, raw in zip(chat_ids, raws)
            }
        )

    async def reschedule(self, chat_id: int, due: float) -> None:
        """Set when the chat's next digest is due, if it is still subscribed."""
        # XX: never re-add a chat that unsubscribed while its digest was being sent.
        await self.redis.zadd(keys.DUE, {str(chat_id): due}, xx=True)

    async def next_due(self, chat_id: int) -> float | None:
        """When the chat's next digest is due."""
        return await self.redis.zscore(keys.DUE, chat_id)

    async def forget_chat(self, chat_id: int) -> None:
        """Delete everything stored for a chat that blocked the bot, left or is gone."""
        raw: str | None = await self.redis.hget(  # type: ignore[assignment]
            _chat(chat_id), "sources"
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in _source_keys(raw):
                pipe.srem(_source_chats(key), chat_id)
            pipe.zrem(keys.DUE, chat_id)
            pipe.zrem(keys.QUIET_END, chat_id)
            pipe.delete(*(template.format(chat_id=chat_id) for template in keys.CHAT_KEYS))
            await pipe.execute()

    async def migrate_chat(self, old_id: int, new_id: int, max_sources: int | None = None) -> None:
        """Move a group's settings to its new supergroup id, merging with what is there.

        A supergroup with settings of its own keeps them: the group's sources are added
        after its own (no duplicates, at most ``max_sources``), the digest is kept if
        either had one (unless the supergroup said /stop), and both seen histories are
        kept. Safe to repeat and to run from two replicas at once: the second finds
        nothing left to move.
        """
        old, new = _chat(old_id), _chat(new_id)
        seen_old, seen_new = keys.SEEN.format(chat_id=old_id), keys.SEEN.format(chat_id=new_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(old, new, seen_old)
                    old_data: dict[str, str] = await pipe.hgetall(old)  # type: ignore[assignment]
                    new_data: dict[str, str] = await pipe.hgetall(new)  # type: ignore[assignment]
                    old_due = await pipe.zscore(keys.DUE, old_id)
                    new_due = await pipe.zscore(keys.DUE, new_id)
                    has_seen = bool(await pipe.exists(seen_old))
                    if not old_data and old_due is None and not has_seen:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return
                    merged = _merge_chat(old_data, new_data, max_sources)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(old)
                    if merged != new_data:
                        pipe.delete(new)
                        if merged:
                            pipe.hset(new, mapping=dict[Any, Any](merged))
                    pipe.zrem(keys.DUE, old_id)
                    if "interval" not in merged:
                        pipe.zrem(keys.DUE, new_id)
                    elif "interval" not in new_data or new_due is None:
                        due = old_due if old_due is not None else new_due
                        if due is not None:
                            pipe.zadd(keys.DUE, {str(new_id): due})
                    _move_in_index(pipe, old_id, old_data, new_id, merged)
                    if has_seen:
                        pipe.zunionstore(seen_new, [seen_new, seen_old], aggregate="MAX")
                        pipe.zremrangebyrank(seen_new, 0, -keys.SEEN_MAX - 1)
                        pipe.delete(seen_old)
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # the other replica moved it meanwhile: look again

    # --- messages held during quiet hours ---------------------------------------------

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

    # --- seen items --------------------------------------------------------------------

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

    # --- fetch cache -------------------------------------------------------------------

    async def get_cached(self, digest: str) -> CachedNews | None:
        """A source's last fetch, however old."""
        data: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            keys.FEED.format(digest=digest)
        )
        return _cached(data)

    async def get_cached_many(self, digests: Sequence[str]) -> list[CachedNews | None]:
        """The last fetch of each source, in order, read in one round trip."""
        if not digests:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hgetall(keys.FEED.format(digest=digest))
            found: list[dict[str, str]] = await pipe.execute()
        return [_cached(data) for data in found]

    async def put_cached(self, digest: str, news: CachedNews) -> None:
        """Store a source's fetch for every chat and replica."""
        key = keys.FEED.format(digest=digest)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=dict[Any, Any](news.to_mapping()))
            pipe.expire(key, keys.FEED_TTL_SECONDS)
            await pipe.execute()

    async def lock_fetch(self, digest: str, owner: str) -> bool:
        """Take the right to fetch a source; False if another fetch is under way."""
        key = keys.FETCH_LOCK.format(digest=digest)
        return bool(await self.redis.set(key, owner, nx=True, ex=keys.FETCH_LOCK_SECONDS))

    async def unlock_fetch(self, digest: str, owner: str) -> None:
        """Give up the right to fetch a source, if we still hold it."""
        await self._release(keys=[keys.FETCH_LOCK.format(digest=digest)], args=[owner])

    # --- moved feeds -------------------------------------------------------------------
    #
    # Lazily, when a chat's sources are read: a move costs nothing until then, and never
    # a scan of every chat (which anyone with a redirecting URL could cause once a cache
    # window). Reading costs one MGET for a chat with feeds; the rewrite happens once.

    async def record_move(self, old_key: str, new_key: str) -> None:
        """Remember that the feed at ``old_key`` moved for good to ``new_key``."""
        await self.redis.set(
            keys.MOVED.format(digest=_source_digest(old_key)), new_key, ex=keys.MOVED_TTL_SECONDS
        )

    async def follow_moves(self, chats: dict[int, list[Source]]) -> dict[int, list[Source]]:
        """The chats' sources with moved feeds under their new URLs, stored so."""
        feeds = sorted(
            {
                source.key
                for sources in chats.values()
                for source in sources
                if source.kind == "feed"
            }
        )
        if not feeds:
            return chats
        found: list[str | None] = await self.redis.mget(  # type: ignore[assignment]
            [keys.MOVED.format(digest=_source_digest(key)) for key in feeds]
        )
        moves = {old: new for old, new in zip(feeds, found) if new and new != old}
        if not moves:
            return chats
        result = dict(chats)
        for chat_id, sources in chats.items():
            if any(source.key in moves for source in sources):
                result[chat_id] = await self._rewrite_moved(chat_id, moves)
        return result

    async def _rewrite_moved(self, chat_id: int, moves: dict[str, str]) -> list[Source]:
        """Rewrite a chat's moved sources (and their filters) in one transaction."""
        key = _chat(chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw: list[str | None] = await pipe.hmget(  # type: ignore[assignment]
                        key, ["sources", "filters"]
                    )
                    raw_sources, raw_filters = raw
                    sources = _moved_sources(
                        [Source.from_json(data) for data in json.loads(raw_sources)]
                        if raw_sources
                        else [],
                        moves,
                    )
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, "sources", json.dumps([source.to_json() for source in sources]))
                    if raw_filters:
                        pipe.hset(key, "filters", _moved_filters(raw_filters, moves))
                    await pipe.execute()
                    return sources
                except WatchError:
                    continue  # the chat changed meanwhile: rewrite what it has now

    # --- source health -----------------------------------------------------------------

    async def chats_using(self, key: str) -> list[int]:
        """The chats that have a source (by its key) among their sources."""
        members = await self.redis.smembers(_source_chats(key))
        return sorted(int(member) for member in members)

    async def unindex_chat(self, key: str, chat_id: int) -> None:
        """Take a chat out of a source's index (it no longer has the source)."""
        await self.redis.srem(_source_chats(key), chat_id)

    async def build_source_index(self) -> int:
        """Index the chats stored before the index existed, once per Redis.

        Returns how many chats were read (0: built before, by this or another replica).
        A chat changing its sources meanwhile may leave itself indexed for a source it
        dropped; whoever reads the index checks the chat's own list (and unindexes it).
        """
        if not await self.redis.set(keys.SOURCE_CHATS_BUILT, str(time.time()), nx=True):
            return 0
        prefix = keys.CHAT.format(chat_id="")
        read = 0
        async for name in self.redis.scan_iter(
            match=prefix + "*", count=keys.SOURCE_CHATS_SCAN, _type="hash"
        ):
            chat_id = name[len(prefix) :]
            if not chat_id.lstrip("-").isdigit():
                continue  # not a chat hash
            raw: str | None = await self.redis.hget(name, "sources")  # type: ignore[assignment]
            read += 1
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in _source_keys(raw):
                    pipe.sadd(_source_chats(key), chat_id)
                await pipe.execute()
        return read

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

    # --- delivery ----------------------------------------------------------------------

    async def sent_parts(self, scope: str) -> set[str]:
        """The parts of a reply Telegram already took (see keys.PARTS_SENT)."""
        members = await self.redis.smembers(keys.PARTS_SENT.format(scope=scope))
        return {member.decode() if isinstance(member, bytes) else member for member in members}

    async def mark_part_sent(self, scope: str, part: str) -> None:
        """Remember that Telegram took this part of a reply."""
        key = keys.PARTS_SENT.format(scope=scope)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, part)
            pipe.expire(key, keys.PARTS_SENT_SECONDS)
            await pipe.execute()

    # --- groups, topics and settings ---------------------------------------------------

    async def cached_admin(self, chat_id: int, user_id: int, now: float) -> bool | None:
        """Whether a user administers a group, if asked within keys.ADMIN_CACHE_SECONDS."""
        value: str | None = await self.redis.hget(  # type: ignore[assignment]
            keys.ADMINS.format(chat_id=chat_id), str(user_id)
        )
        if not value:
            return None
        flag, _, asked = value.partition(":")
        try:
            if now - float(asked) > keys.ADMIN_CACHE_SECONDS:
                return None
        except ValueError:
            return None  # written by another version: ask again
        return flag == "1"

    async def cache_admin(self, chat_id: int, user_id: int, admin: bool, now: float) -> None:
        """Remember for keys.ADMIN_CACHE_SECONDS whether a user administers a group."""
        key = keys.ADMINS.format(chat_id=chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(user_id), f"{int(admin)}:{now!r}")
            pipe.expire(key, keys.ADMIN_CACHE_SECONDS)
            await pipe.execute()

    async def delivery(self, chat_id: int) -> Delivery:
        """How the chat's messages go out (previews, silence, the digest's topic)."""
        previews, silent, thread = await self.redis.hmget(
            _chat(chat_id), [keys.FIELD_PREVIEWS, keys.FIELD_SILENT, keys.FIELD_DIGEST_THREAD]
        )
        return Delivery(
            previews=previews == "1",
            silent=silent == "1",
            digest_thread=int(thread) if thread else None,
        )

    async def chat_state(self, chat_id: int) -> tuple[bool, Delivery]:
        """Whether the chat said /stop, and how its messages go out: one read for both."""
        stopped, previews, silent, thread = await self.redis.hmget(
            _chat(chat_id),
            ["stopped", keys.FIELD_PREVIEWS, keys.FIELD_SILENT, keys.FIELD_DIGEST_THREAD],
        )
        delivery = Delivery(
            previews=previews == "1",
            silent=silent == "1",
            digest_thread=int(thread) if thread else None,
        )
        return stopped == "1", delivery

    async def set_flag(self, chat_id: int, field: str, on: bool) -> None:
        """Turn a chat's delivery setting (keys.FIELD_PREVIEWS, FIELD_SILENT) on or off."""
        if on:
            await self.redis.hset(_chat(chat_id), field, "1")
        else:
            await self.redis.hdel(_chat(chat_id), field)

    async def set_digest_thread(self, chat_id: int, thread_id: int | None) -> None:
        """Send the chat's digest into a forum topic (None: the General topic)."""
        if thread_id is None:
            await self.redis.hdel(_chat(chat_id), keys.FIELD_DIGEST_THREAD)
        else:
            await self.redis.hset(_chat(chat_id), keys.FIELD_DIGEST_THREAD, thread_id)

    async def drop_digest_thread(self, chat_id: int, thread_id: int) -> bool:
        """Forget the digest's topic if it is still ``thread_id``; tell whether it was."""
        dropped = await self._drop_field(
            keys=[_chat(chat_id)], args=[keys.FIELD_DIGEST_THREAD, str(thread_id)]
        )
        return bool(dropped)

    async def remember_channel(self, user_id: int, channel_id: int) -> None:
        """Note that a user manages a channel through the bot (for /channels)."""
        await self.redis.sadd(keys.USER_CHANNELS.format(chat_id=user_id), channel_id)

    async def channels_of(self, user_id: int) -> list[int]:
        """The channels a user manages through the bot, in id order."""
        members = await self.redis.smembers(keys.USER_CHANNELS.format(chat_id=user_id))
        return sorted(int(member) for member in members)

    async def forget_channel_of(self, user_id: int, channel_id: int) -> None:
        """Drop a channel from a user's list (the bot left it, or the user is no admin)."""
        await self.redis.srem(keys.USER_CHANNELS.format(chat_id=user_id), channel_id)

    async def claim_commands(self, digest: str) -> bool:
        """Record ``digest`` as the registered command lists; False if it already was."""
        previous = await self.redis.set(keys.COMMANDS_SET, digest, get=True)
        return previous != digest

    async def unclaim_commands(self, digest: str) -> None:
        """Forget a registration that failed, so the next start tries again."""
        await self._release(keys=[keys.COMMANDS_SET], args=[digest])

    # --- alerts ------------------------------------------------------------------------

    async def get_alerts(self, chat_id: int) -> dict[str, tuple[Source, int | None]]:
        """The chat's alerts: source digest -> (source, topic it was set in)."""
        raw: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            keys.ALERTS.format(chat_id=chat_id)
        )
        alerts = {}
        for digest, value in raw.items():
            try:
                data = json.loads(value)
                alerts[digest] = (Source.from_json(data["source"]), data.get("thread"))
            except (ValueError, KeyError, TypeError):
                continue  # written by another version; /alert sets it again
        return alerts

    async def add_alerts(
        self,
        chat_id: int,
        watched: Sequence[tuple[str, Source]],
        thread_id: int | None,
        known: dict[str, list[str] | None],
        first_checks: dict[str, float],
    ) -> None:
        """Watch sources for the chat from the items ``known`` now (no backfill).

        ``known`` maps each digest to the ids of the items there now (None: not read
        yet); ``first_checks`` to when the source is first checked, if nobody checks it.
        """
        if not watched:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for digest, source in watched:
                pipe.hset(
                    keys.ALERTS.format(chat_id=chat_id),
                    digest,
                    json.dumps({"source": source.to_json(), "thread": thread_id}),
                )
                ids = known.get(digest)
                pipe.hset(
                    keys.ALERT_KNOWN.format(chat_id=chat_id),
                    digest,
                    json.dumps(None if ids is None else sorted({_seen_member(i) for i in ids})),
                )
                pipe.sadd(keys.ALERT_WATCHERS.format(digest=digest), chat_id)
                pipe.hset(keys.ALERT_SOURCES, digest, json.dumps(source.to_json()))
                # NX: a source already watched keeps its place in the window.
                pipe.zadd(keys.ALERT_CHECKS, {digest: first_checks[digest]}, nx=True)
            await pipe.execute()

    async def remove_alerts(self, chat_id: int, digests: Sequence[str]) -> None:
        """Stop the chat's alerts on these sources (the watcher drops unwatched sources)."""
        if not digests:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.ALERTS.format(chat_id=chat_id), *digests)
            pipe.hdel(keys.ALERT_KNOWN.format(chat_id=chat_id), *digests)
            for digest in digests:
                pipe.srem(keys.ALERT_WATCHERS.format(digest=digest), chat_id)
            await pipe.execute()

    async def claim_alert_checks(
        self, now: float, limit: int, hold: float = keys.ALERT_CLAIM_SECONDS
    ) -> list[str]:
        """Take up to ``limit`` sources due a check; no other replica gets them.

        A claimed source comes back ``hold`` seconds later unless it was rescheduled.
        """
        found: list[str] = await self._claim_due(keys=[keys.ALERT_CHECKS], args=[now, hold, limit])
        return found

    async def reschedule_alert_check(self, digest: str, due: float) -> None:
        """Set when the source is next checked, if it is still watched."""
        await self.redis.zadd(keys.ALERT_CHECKS, {digest: due}, xx=True)

    async def alert_source(self, digest: str) -> tuple[Source | None, list[int]]:
        """A watched source and the chats watching it, read at once."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.ALERT_SOURCES, digest)
            pipe.smembers(keys.ALERT_WATCHERS.format(digest=digest))
            raw, chats = await pipe.execute()
        try:
            source = Source.from_json(json.loads(raw)) if raw else None
        except (ValueError, KeyError, TypeError):
            source = None  # written by another version: as if nobody watched it
        return source, sorted(int(chat) for chat in chats)

    async def drop_alert_source(self, digest: str) -> bool:
        """Stop checking a source nobody watches; False if somebody does."""
        return bool(
            await self._drop_alert_source(
                keys=[
                    keys.ALERT_WATCHERS.format(digest=digest),
                    keys.ALERT_CHECKS,
                    keys.ALERT_SOURCES,
                ],
                args=[digest],
            )
        )

    async def alert_state(
        self, chat_id: int, digest: str
    ) -> tuple[bool, int | None, set[str] | None]:
        """Whether the chat watches the source, the topic, and the item hashes it knows.

        A chat that no longer watches it (/alert off, forgotten) leaves its watchers.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.ALERTS.format(chat_id=chat_id), digest)
            pipe.hget(keys.ALERT_KNOWN.format(chat_id=chat_id), digest)
            alert, known = await pipe.execute()
        if alert is None:
            await self._forget_watcher(
                keys=[
                    keys.ALERTS.format(chat_id=chat_id),
                    keys.ALERT_WATCHERS.format(digest=digest),
                ],
                args=[digest, chat_id],
            )
            return False, None, None
        try:
            thread = json.loads(alert).get("thread")
            ids = json.loads(known) if known else None
        except (ValueError, AttributeError):
            thread, ids = None, None  # another version's: start again from what is there
        return True, thread, None if ids is None else set(ids)

    async def lock_alert_chat(self, chat_id: int, owner: str) -> bool:
        """Take the right to deliver alerts to a chat; False if another delivery has it."""
        key = keys.ALERT_LOCK.format(chat_id=chat_id)
        return bool(await self.redis.set(key, owner, nx=True, ex=keys.ALERT_LOCK_SECONDS))

    async def unlock_alert_chat(self, chat_id: int, owner: str) -> None:
        """Give up the right to deliver alerts to a chat, if we still hold it."""
        await self._release(keys=[keys.ALERT_LOCK.format(chat_id=chat_id)], args=[owner])

    async def set_alert_known(self, chat_id: int, digest: str, item_ids: Iterable[str]) -> None:
        """Bring the chat up to these items of the source, if it still watches it."""
        value = json.dumps(sorted({_seen_member(item_id) for item_id in item_ids}))
        key = keys.ALERT_KNOWN.format(chat_id=chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hexists(keys.ALERTS.format(chat_id=chat_id), digest)
            pipe.hset(key, digest, value)
            watching, _ = await pipe.execute()
        if not watching:  # /alert off meanwhile: what was written goes too
            await self.redis.hdel(key, digest)


def alert_member(item_id: str) -> str:
    """An item id as the alerts' known lists store it (as the seen history does)."""
    return _seen_member(item_id)


def digest_scope(chat_id: int) -> str:
    """The delivery scope of a chat's digest (keys.PARTS_SENT)."""
    return f"digest:{chat_id}"


def update_scope(update_id: int) -> str:
    """The delivery scope of the reply to an update (keys.PARTS_SENT)."""
    return f"update:{update_id}"


def _cached(data: dict[str, str]) -> CachedNews | None:
    try:
        return CachedNews.from_mapping(data) if data else None
    except (KeyError, ValueError, TypeError):
        return None  # written by another version; refetching is the cure


def _source_digest(key: str) -> str:
    """A source key as keys.MOVED names it (as news.source_digest does for the cache)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _moved_sources(sources: list[Source], moves: dict[str, str]) -> list[Source]:
    """Sources with moved feeds under their new URL, shown as it; no duplicates."""
    result: list[Source] = []
    seen: set[str] = set()
    for source in sources:
        if source.key in moves:
            source = Source(kind="feed", key=moves[source.key], label=moves[source.key])
        if source.key not in seen:
            seen.add(source.key)
            result.append(source)
    return result


def _moved_filters(raw: str, moves: dict[str, str]) -> str:
    """Filter rules follow their feed to its new URL (rules already there win)."""
    try:
        rules = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(rules, dict):
        return raw
    moved = {key: value for key, value in rules.items() if key not in moves}
    for key, value in rules.items():
        if key in moves:
            moved.setdefault(moves[key], value)
    return json.dumps(moved)


def _chat(chat_id: int) -> str:
    return keys.CHAT.format(chat_id=chat_id)


def feed_digest(key: str) -> str:
    """The part of a source's keys that names it: a hash of its canonical name."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _source_chats(key: str) -> str:
    return keys.SOURCE_CHATS.format(digest=feed_digest(key))


def _move_in_index(
    pipe: Any, old_id: int, old: dict[str, str], new_id: int, merged: dict[str, str]
) -> None:
    """Queue the index's side of a migration: the group out, the supergroup in."""
    for key in _source_keys(old.get("sources")):
        pipe.srem(_source_chats(key), old_id)
    for key in _source_keys(merged.get("sources")):
        pipe.sadd(_source_chats(key), new_id)


def _source_keys(raw: str | None) -> set[str]:
    """The keys of the sources in a chat hash's ``sources`` field."""
    try:
        return {data["key"] for data in json.loads(raw)} if raw else set()
    except (ValueError, KeyError, TypeError):
        return set()  # written by another version: nothing to index


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


def _seen_member(item_id: str) -> str:
    """An item id as the seen history stores it: 16 hex digits, whatever its length.

    Feed ids are often long URLs; above 64 bytes a member alone would move the set to
    Redis' large encoding. 64 bits of SHA-256 make a collision among a chat's few hundred
    entries a chance of about one in 10^14.
    """
    return hashlib.sha256(item_id.encode()).hexdigest()[:16]


def _merge_chat(
    old: dict[str, str], new: dict[str, str], max_sources: int | None
) -> dict[str, str]:
    """The fields of a supergroup's chat hash after a group's migration into it."""
    if not new:
        return dict(old)  # the usual case: the supergroup is new to the bot
    # Fields the supergroup lacks come from the group; its own stay as they are.
    merged = {
        **{
            name: value
            for name, value in old.items()
            if name not in ("stopped", "interval", "schedule", "sources")
        },
        **new,
    }
    sources: dict[str, dict[str, Any]] = {}
    for raw in (new.get("sources"), old.get("sources")):
        for data in json.loads(raw) if raw else []:
            sources.setdefault(data["key"], data)
    chosen = list(sources.values())[:max_sources]
    if chosen:
        merged["sources"] = json.dumps(chosen)
    if "interval" not in new and "interval" in old and "stopped" not in new:
        merged["interval"] = old["interval"]
        if "schedule" in old:
            merged["schedule"] = old["schedule"]
    if "filters" in old and "filters" in new:
        merged["filters"] = _merge_filters(old["filters"], new["filters"])
    return merged


def _merge_filters(old: str, new: str) -> str:
    """The supergroup's filter rules, then the group's for sources it has none for."""
    try:
        mine, theirs = json.loads(new), json.loads(old)
    except ValueError:
        return new
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return new
    merged = dict(mine)
    count = sum(len(rules) for rules in mine.values() if isinstance(rules, list))
    for key, rules in theirs.items():
        if (
            key not in merged
            and isinstance(rules, list)
            and count + len(rules) <= filters.MAX_RULES
        ):
            merged[key] = rules
            count += len(rules)
    return json.dumps(merged)
