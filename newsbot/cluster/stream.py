"""The consumer: every replica reads updates from the stream and handles each once.

Redis delivers each stream entry to one consumer of the group. What it cannot do alone
is make an update's *effect* happen once when a replica dies half-way, or when the same
update was appended twice. So, per update id:

* a lock (SET NX with expiry) while a replica handles it: a duplicate entry waits;
* a "done" mark, written with the XACK in one transaction: a redelivered entry is
  acknowledged without being handled again.

A replica that dies leaves its entries pending; after ``CLAIM_IDLE_MS`` another replica
claims them (XAUTOCLAIM). A live replica keeps its slow entries from being claimed by
touching them (XCLAIM to itself) while it works, and renews its locks with each touch;
a dead one's locks run out before its entries can be claimed, so the claimer is not
turned away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from newsbot import keys
from newsbot.errors import Deferred
from newsbot.metrics import HANDLER_SECONDS, STREAM_LAG, STREAM_PENDING, UPDATES

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
BATCH = 32
BLOCK_MS = 1000
CLAIM_EVERY_SECONDS = 2.0
TOUCH_EVERY_SECONDS = keys.CLAIM_IDLE_MS / 3000
# An update's lock lives twice the touch period, renewed at every touch: it outlives a
# late touch, yet a dead holder's lock is gone before its entry idles long enough to be
# claimed (CLAIM_IDLE_MS).
LOCK_MS = keys.CLAIM_IDLE_MS * 2 // 3
ERROR_BACKOFF = 1.0
# How long a replica keeps trying to record a handled update while Redis is away.
FINISH_RETRY_SECONDS = 30.0

# 'done' if the update was handled, 'mine' if we hold its lock now, 'busy' if another does.
_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'done' end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'busy' end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 'mine'
"""

# Extend the locks among KEYS that ARGV[1] still holds to ARGV[2] ms.
_RENEW = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0
"""

Entry = tuple[str, dict[str, str]]


class Consumer:
    """Reads the update stream as one consumer of the group and handles each update."""

    def __init__(self, redis: aioredis.Redis, name: str, handle: Handler) -> None:
        self.redis = redis
        self.name = name
        self.handle = handle
        self._begin = redis.register_script(_BEGIN)
        self._renew = redis.register_script(_RENEW)
        self._last_claim = 0.0
        self.running = False
        self.heartbeat = time.monotonic()

    async def ensure_group(self) -> None:
        """Create the stream and the consumer group if they do not exist yet."""
        try:
            await self.redis.xgroup_create(keys.UPDATES, keys.GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished first."""
        self.running = True
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except RedisError:
                    # Redis restarting or unreachable: readiness says so; keep trying.
                    self.running = False
                    logger.warning("reading updates failed; retrying", exc_info=True)
                    await asyncio.sleep(ERROR_BACKOFF)
                    await self._recreate_group()
                else:
                    self.running = True
        finally:
            self.running = False

    async def run_once(self, block_ms: int = BLOCK_MS) -> int:
        """Read and handle one batch (claimed stale entries first); return its size."""
        self.heartbeat = time.monotonic()
        entries: list[Entry] = []
        if time.monotonic() - self._last_claim > CLAIM_EVERY_SECONDS:
            self._last_claim = time.monotonic()
            entries = await self._claim_stale()
            await self._update_gauges()
        if not entries:
            reply: list[tuple[str, list[Entry]]]
            reply = await self.redis.xreadgroup(  # type: ignore[assignment]
                keys.GROUP, self.name, {keys.UPDATES: ">"}, count=BATCH, block=block_ms)
            entries = [entry for _, stream_entries in reply for entry in stream_entries]
        if entries:
            await self._handle_batch(entries)
        self.heartbeat = time.monotonic()
        return len(entries)

    async def _handle_batch(self, entries: list[Entry]) -> None:
        # One chat's updates in order; different chats side by side.
        by_chat: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_chat[entry[1].get("chat_id", "0")].append(entry)
        toucher = asyncio.create_task(self._touch(entries))
        try:
            await asyncio.gather(*(self._handle_chat(chat) for chat in by_chat.values()))
        finally:
            toucher.cancel()

    async def _handle_chat(self, entries: list[Entry]) -> None:
        for entry_id, fields in entries:
            await self._handle_entry(entry_id, fields)

    async def _handle_entry(self, entry_id: str, fields: dict[str, str]) -> None:
        update_id = fields.get("update_id", "")
        done_key = keys.UPDATE_DONE.format(update_id=update_id)
        lock_key = keys.UPDATE_LOCK.format(update_id=update_id)
        state = await self._begin(keys=[done_key, lock_key],
                                  args=[self.name, LOCK_MS])
        if state == "busy":
            return  # a duplicate being handled elsewhere; claimed again later, then 'done'
        if state == "mine":
            try:
                with HANDLER_SECONDS.time():
                    await self.handle(json.loads(fields["update"]))
                UPDATES.labels(outcome="handled").inc()
            except Deferred:
                # Redis or Telegram was away: not done; the entry stays pending and is
                # claimed and handled again once it has been idle long enough.
                await self.redis.delete(lock_key)
                return
            except RedisError:
                raise  # as above, and this consumer backs off too
            except Exception:
                # A bug, not an outage: handling it again would fail again. Log it and
                # acknowledge, or it would come back forever.
                UPDATES.labels(outcome="failed").inc()
                logger.exception("update %s could not be handled", update_id)
        else:
            UPDATES.labels(outcome="duplicate").inc()
        await self._finish(entry_id, done_key, lock_key)

    async def _finish(self, entry_id: str, done_key: str, lock_key: str) -> None:
        """Mark an update done and acknowledge it, waiting out a short Redis outage.

        The update's effects have happened: giving up here would leave the entry
        pending and have it handled, and answered, a second time.
        """
        deadline = time.monotonic() + FINISH_RETRY_SECONDS
        while True:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(done_key, "1", ex=keys.UPDATE_DONE_SECONDS)
                    pipe.delete(lock_key)
                    pipe.xack(keys.UPDATES, keys.GROUP, entry_id)
                    await pipe.execute()
                return
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(ERROR_BACKOFF / 2)

    async def _claim_stale(self) -> list[Entry]:
        _, claimed, *_ = await self.redis.xautoclaim(
            keys.UPDATES, keys.GROUP, self.name, min_idle_time=keys.CLAIM_IDLE_MS,
            start_id="0-0", count=BATCH)
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if entries:
            logger.info("claimed %d updates left by a stopped replica", len(entries))
        return entries

    async def _touch(self, entries: list[Entry]) -> None:
        """Reset our entries' idle time and renew our locks while we work."""
        entry_ids = [entry_id for entry_id, _ in entries]
        locks = [keys.UPDATE_LOCK.format(update_id=fields.get("update_id", ""))
                 for _, fields in entries]
        while True:
            await asyncio.sleep(TOUCH_EVERY_SECONDS)
            try:
                await self.redis.xclaim(keys.UPDATES, keys.GROUP, self.name, min_idle_time=0,
                                        message_ids=list[Any](entry_ids), justid=True)
                await self._renew(keys=locks, args=[self.name, LOCK_MS])
            except RedisError:
                pass  # Redis is away; the work in hand notices and waits or backs off

    async def _update_gauges(self) -> None:
        for group in await self.redis.xinfo_groups(keys.UPDATES):
            if group.get("name") == keys.GROUP:
                STREAM_PENDING.set(group.get("pending") or 0)
                STREAM_LAG.set(group.get("lag") or 0)

    async def _recreate_group(self) -> None:
        try:
            await self.ensure_group()
        except RedisError:
            pass  # still down; the next round tries again


async def wait_idle(redis: aioredis.Redis, timeout: float = 30.0) -> bool:
    """Wait until every update in the stream was read and acknowledged (for tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        groups = await redis.xinfo_groups(keys.UPDATES)
        group = next((g for g in groups if g.get("name") == keys.GROUP), None)
        if group is not None and not group.get("pending") and not group.get("lag"):
            return True
        await asyncio.sleep(0.05)
    return False
