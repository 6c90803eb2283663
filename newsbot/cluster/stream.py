"""The consumer: every replica reads updates from the stream and handles each once.

Redis delivers each stream entry to one consumer of the group. What it cannot do alone
is make an update's *effect* happen once when a replica dies half-way, or when the same
update was appended twice. So, per update id:

* a lock (SET NX with expiry) while a replica handles it: a duplicate entry waits;
* a "done" mark, written with the XACK in one transaction: a redelivered entry is
  acknowledged without being handled again.

Order: a replica handles one chat's updates one after another; across replicas, each
entry names its chat's previous update (see cluster.poller) and waits until that one
is done, so "/source x" followed at once by "/fetch" fetches x wherever each lands.

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
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from newsbot import keys
from newsbot.errors import Deferred
from newsbot.metrics import HANDLER_SECONDS, STREAM_LAG, STREAM_PENDING, UPDATES

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
# Updates a replica handles at once. Reading goes on while they run, so one slow
# /fetch does not hold up the updates behind it (except its own chat's).
MAX_IN_FLIGHT = 32
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
# How long an update waits for the chat's previous update, handled by another replica.
# Past that (the other replica died, or Redis failed it) it goes ahead: better a reply
# out of order than none.
ORDER_WAIT_SECONDS = 15.0

# KEYS: done mark, lock, done mark of the chat's previous update (or "" if none).
# 'done' if the update was handled, 'wait' while the chat's previous update is not,
# 'busy' if another replica holds its lock, 'mine' if we hold it now.
_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'done' end
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then return 'wait' end
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
    """Reads the update stream as one consumer of the group and handles each update.

    Each chat's updates are handled one after another, in order; different chats side
    by side, up to MAX_IN_FLIGHT at a time.
    """

    def __init__(self, redis: aioredis.Redis, name: str, handle: Handler) -> None:
        self.redis = redis
        self.name = name
        self.handle = handle
        self._begin = redis.register_script(_BEGIN)
        self._renew = redis.register_script(_RENEW)
        self._last_claim = 0.0
        self._in_flight: dict[str, Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._chat_tails: dict[str, asyncio.Task[None]] = {}
        self.running = False
        self.heartbeat = time.monotonic()

    async def ensure_group(self) -> None:
        """Create the stream and the consumer group if they do not exist yet."""
        try:
            await self.redis.xgroup_create(keys.UPDATES, keys.GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self, stop: asyncio.Event, once: bool = False) -> None:
        """Consume until ``stop`` is set (or one read, with ``once``), then drain."""
        self.running = True
        toucher = asyncio.create_task(self._touch())
        try:
            while not stop.is_set():
                try:
                    await self.read_once()
                except RedisError:
                    # Redis restarting or unreachable: readiness says so; keep trying.
                    self.running = False
                    logger.warning("reading updates failed; retrying", exc_info=True)
                    await asyncio.sleep(ERROR_BACKOFF)
                    await self._recreate_group()
                else:
                    self.running = True
                if once:
                    break
            # Stopping: no more reads; finish and acknowledge what is in hand.
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            toucher.cancel()
            self.running = False

    async def read_once(self, block_ms: int = BLOCK_MS) -> int:
        """Read entries (claimed stale ones first) and start handling them; return how many."""
        self.heartbeat = time.monotonic()
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        room = MAX_IN_FLIGHT - len(self._in_flight)
        entries: list[Entry] = []
        if time.monotonic() - self._last_claim > CLAIM_EVERY_SECONDS:
            self._last_claim = time.monotonic()
            entries = await self._claim_stale(room)
            await self._update_gauges()
        if not entries:
            reply: list[tuple[str, list[Entry]]]
            reply = await self.redis.xreadgroup(  # type: ignore[assignment]
                keys.GROUP, self.name, {keys.UPDATES: ">"}, count=room, block=block_ms)
            entries = [entry for _, stream_entries in reply for entry in stream_entries]
        for entry in entries:
            self._start(entry)
        self.heartbeat = time.monotonic()
        return len(entries)

    def _start(self, entry: Entry) -> None:
        """Handle an entry after the chat's entries already in hand."""
        entry_id, fields = entry
        if entry_id in self._in_flight:
            return  # claimed back while still in hand
        chat = fields.get("chat_id", "0")
        task = asyncio.create_task(self._handle_after(self._chat_tails.get(chat), entry))
        self._in_flight[entry_id] = entry
        self._tasks.add(task)
        self._chat_tails[chat] = task

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._in_flight.pop(entry_id, None)
            if self._chat_tails.get(chat) is done:
                del self._chat_tails[chat]

        task.add_done_callback(forget)

    async def _handle_after(self, previous: asyncio.Task[None] | None, entry: Entry) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self._handle_entry(*entry)
        except RedisError:
            # Left pending: claimed and handled again once Redis answers.
            logger.warning("update %s left pending: Redis failed", entry[1].get("update_id"),
                           exc_info=True)

    async def _handle_entry(self, entry_id: str, fields: dict[str, str]) -> None:
        update_id = fields.get("update_id", "")
        done_key = keys.UPDATE_DONE.format(update_id=update_id)
        lock_key = keys.UPDATE_LOCK.format(update_id=update_id)
        previous = fields.get("after", "")
        previous_done = keys.UPDATE_DONE.format(update_id=previous) if previous else ""
        waited, pause = 0.0, 0.005
        while True:
            state = await self._begin(keys=[done_key, lock_key, previous_done],
                                      args=[self.name, LOCK_MS])
            if state != "wait":
                break
            if waited > ORDER_WAIT_SECONDS:
                logger.warning("update %s goes ahead of update %s of the same chat",
                               update_id, previous)
                previous_done = ""
                continue
            # Another replica handles the chat's previous update: let it finish first.
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.2)
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

    async def _claim_stale(self, count: int) -> list[Entry]:
        _, claimed, *_ = await self.redis.xautoclaim(
            keys.UPDATES, keys.GROUP, self.name, min_idle_time=keys.CLAIM_IDLE_MS,
            start_id="0-0", count=count)
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if entries:
            logger.info("claimed %d updates left by a stopped replica", len(entries))
        return entries

    async def _touch(self) -> None:
        """Reset the idle time of the entries in hand and renew their locks, forever."""
        while True:
            await asyncio.sleep(TOUCH_EVERY_SECONDS)
            if not self._in_flight:
                continue
            entry_ids = list(self._in_flight)
            locks = [keys.UPDATE_LOCK.format(update_id=fields.get("update_id", ""))
                     for _, fields in self._in_flight.values()]
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
