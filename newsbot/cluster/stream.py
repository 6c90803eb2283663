"""The consumer: every replica reads updates from the stream and handles each once.

Redis delivers each stream entry to one consumer of the group. What it cannot do alone
is make an update's *effect* happen once when a replica dies half-way, or when the same
update was appended twice. So, per update id:

* a lock (SET NX with expiry) while a replica handles it: a duplicate entry waits;
* a "done" mark, written with the XACK in one transaction: a redelivered entry is
  acknowledged without being handled again.

Order: a replica keeps one queue per chat with one runner, so a chat's updates are
handled one after another; across replicas, each entry names its chat's previous update
(see cluster.poller) and waits until that one is done, so "/source x" followed at once
by "/fetch" fetches x wherever each lands.

Fairness: capacity counts work that can run. At most ``max_running`` handlers run at
once; a handler that only waits (its chat's previous update, a rate-limit slot, a
``retry_after``: see ``waiting``) gives its share to other chats meanwhile. A chat holds
at most ``chat_in_hand`` entries in hand; its later entries are given back to the stream
(pending, not counted as a try) and come back by claim when the chat has room, so one
chat's backlog never fills a replica.

Poison updates: an update that cannot be parsed, that makes its handler fail, or that
was delivered ``max_tries`` times (the stream's delivery count: outages, crashing
replicas) is logged once, counted, moved to the dead-letter stream and acknowledged with
its done mark, so neither a claim nor a restart brings it back.

A replica that dies leaves its entries pending; after ``claim_idle_ms`` another replica
claims them. A live replica keeps its entries from being claimed by touching them
(XCLAIM to itself) while they are in hand, and renews its locks with each touch; a dead
one's locks run out before its entries can be claimed, so the claimer is not turned
away. A replica that stops interrupts the handlers that only wait and gives their
entries, and those not started, back at once: whichever replica claims them answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from newsbot import keys
from newsbot.cluster.capacity import Capacity, Slot
from newsbot.cluster.deadletter import DeadLetters
from newsbot.cluster.pending import Entry, Item, PendingList
from newsbot.errors import BadUpdate, Deferred, Held
from newsbot.metrics import HANDLER_SECONDS, STREAM_LAG, STREAM_PENDING, UPDATES
from newsbot.store import AcknowledgedScript

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
# Handlers a replica runs at once (those only waiting do not count); the Redis pool is
# sized from it. Reading goes on while they run, so one slow /fetch does not hold up
# the updates behind it.
MAX_IN_FLIGHT = 32
# Entries a replica holds in hand at once, over all chats: enough for its handlers and
# as many again waiting (a rate-limit slot, a chat's previous update), no more. What a
# replica holds it alone can handle: a larger hand took a burst of slow updates from
# the replicas beside it, which sat idle meanwhile (`benchmarks/run.py replicas`).
MAX_IN_HAND = 2 * MAX_IN_FLIGHT
BLOCK_MS = 1000
CLAIM_EVERY_SECONDS = 2.0
ERROR_BACKOFF = 1.0
# How long a replica keeps trying to record a handled update while Redis is away.
FINISH_RETRY_SECONDS = 30.0
# How long an update waits for the chat's previous update, handled by another replica.
# Past that (the other replica died, or Redis failed it) it goes ahead: better a reply
# out of order than none.
ORDER_WAIT_SECONDS = 15.0
# When stopping, handlers get this long to finish before those still waiting for
# Telegram are interrupted; well inside service.DRAIN_SECONDS.
DRAIN_GRACE_SECONDS = 3.0

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

# KEYS: done mark, lock, stream. ARGV: the done mark's TTL, group, entry id. Marks the
# update done, releases its lock and acknowledges its entry (all idempotent); returns
# how many Redis replicas are attached, for the WAIT after it (AcknowledgedScript).
_FINISH = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
return {1, replicas_attached()}
"""


class _EarlierInHand(Exception):
    """An earlier update of the chat is queued behind the one waiting, in the same hand.

    A claim brings a dead replica's entry after the chat's later ones were read. The later
    one waits for its previous update, which may wait, on another replica, for the very
    entry queued behind it here: that one must go first.
    """


def _sent_order(item: Item) -> int:
    """Where an update stands in its chat: Telegram's update ids only grow."""
    return int(item.update_id) if item.update_id.isdigit() else -1


@dataclass
class _Chat:
    """One chat's entries in hand, in order, and the task working through them."""

    queue: deque[Item] = field(default_factory=deque)
    runner: asyncio.Task[None] | None = None
    # While later than now, new entries of this chat are given back too: its earlier
    # ones were, and must come first.
    aside_until: float = 0.0


class Consumer:
    """Reads the update stream as one consumer of the group and handles each update.

    Each chat's updates are handled one after another, in order; different chats side
    by side, up to ``max_running`` at a time. Timings default to keys.py's; tests pass
    short ones.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        name: str,
        handle: Handler,
        *,
        max_running: int = MAX_IN_FLIGHT,
        max_in_hand: int = MAX_IN_HAND,
        chat_in_hand: int = keys.CHAT_IN_HAND,
        max_tries: int = keys.UPDATE_MAX_TRIES,
        block_ms: int = BLOCK_MS,
        claim_every: float = CLAIM_EVERY_SECONDS,
        claim_idle_ms: int = keys.CLAIM_IDLE_MS,
        set_aside_ms: int = keys.SET_ASIDE_MS,
        order_wait: float = ORDER_WAIT_SECONDS,
        drain_grace: float = DRAIN_GRACE_SECONDS,
        error_backoff: float = ERROR_BACKOFF,
        ack_timeout_ms: int = keys.REPLICA_ACK_TIMEOUT_MS,
    ) -> None:
        self.redis = redis
        self.name = name
        self.handle = handle
        self.max_in_hand = max_in_hand
        self.chat_in_hand = chat_in_hand
        self.max_tries = max_tries
        self.block_ms = block_ms
        self.claim_every = claim_every
        self.claim_idle_ms = claim_idle_ms
        # A given-back entry is claimable after (claim_idle_ms - set_aside_ms) idle.
        self.set_aside_ms = min(set_aside_ms, claim_idle_ms)
        self.touch_every = claim_idle_ms / 3000
        # An update's lock lives twice the touch period, renewed at every touch: it
        # outlives a late touch, yet a dead holder's lock is gone before its entry idles
        # long enough to be claimed.
        self.lock_ms = claim_idle_ms * 2 // 3
        self.order_wait = order_wait
        self.drain_grace = drain_grace
        self.error_backoff = error_backoff
        self._capacity = Capacity(max_running)
        self._dead = DeadLetters(redis, name)
        self._pending = PendingList(redis, name, claim_idle_ms)
        self._begin = redis.register_script(_BEGIN)
        self._finish_script = AcknowledgedScript(redis, _FINISH, ack_timeout_ms)
        self._last_claim = 0.0
        self._chats: dict[str, _Chat] = {}
        self._in_hand = 0
        self._progress = asyncio.Event()
        self._stopping = False
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
        self._stopping = False
        toucher = asyncio.create_task(self._touch())
        try:
            while not stop.is_set():
                try:
                    await self.read_once(stop=stop)
                except RedisError:
                    # Redis restarting or unreachable: readiness says so; keep trying.
                    self.running = False
                    logger.warning("reading updates failed; retrying", exc_info=True)
                    await _sleep_or_stop(stop, self.error_backoff)
                    await self._recreate_group()
                else:
                    self.running = True
                if once:
                    break
            await self.drain(interrupt=not once)
        finally:
            toucher.cancel()
            self.running = False

    async def drain(self, interrupt: bool = True) -> None:
        """Finish the handlers at work; interrupt those that still wait; give the rest back.

        Handlers get ``drain_grace`` seconds; one still only waiting then (a long
        ``retry_after``) is interrupted and its update left pending, given back with
        those not started, for whichever replica claims them.
        """
        if not interrupt:
            await asyncio.gather(*self._runners(), return_exceptions=True)
        self._stopping = True
        if self._runners():
            await asyncio.wait(self._runners(), timeout=self.drain_grace)
        self._capacity.interrupt_waiting()
        await asyncio.gather(*self._runners(), return_exceptions=True)
        left = [item for chat in self._chats.values() for item in chat.queue]
        self._chats.clear()
        self._in_hand = 0
        if left:
            try:
                await self._pending.give_back(left, self.claim_idle_ms, release_locks=True)
                logger.info("stopping: %d updates left for another replica", len(left))
            except RedisError:
                pass  # they stay pending and are claimed once idle, just later

    def _runners(self) -> list[asyncio.Task[None]]:
        return [chat.runner for chat in self._chats.values() if chat.runner is not None]

    async def read_once(
        self, block_ms: int | None = None, stop: asyncio.Event | None = None
    ) -> int:
        """Read entries (claimed stale ones first) and take them in hand; return how many."""
        self.heartbeat = time.monotonic()
        while self._in_hand >= self.max_in_hand:
            # A full hand is not a stuck loop: the heartbeat goes on while it waits.
            self._progress.clear()
            progress = asyncio.wait_for(self._progress.wait(), self.block_ms / 1000)
            try:
                if not await _wait_or_stop(progress, stop):
                    return 0
            except TimeoutError:
                pass
            self.heartbeat = time.monotonic()
        room = self.max_in_hand - self._in_hand
        items: list[Item] = []
        if time.monotonic() - self._last_claim > self.claim_every:
            self._last_claim = time.monotonic()
            items = await self._pending.claim(room)
            await self._update_gauges()
        claimed = bool(items)
        if not items:
            read = self.redis.xreadgroup(
                keys.GROUP,
                self.name,
                {keys.UPDATES: ">"},
                count=room,
                block=block_ms or self.block_ms,
            )
            reply: list[tuple[str, list[Entry]]] | None = await _wait_or_stop(read, stop)
            items = [
                Item(entry_id, fields)
                for _, entries in reply or ()
                for entry_id, fields in entries
            ]
        await self._take(items, claimed)
        self.heartbeat = time.monotonic()
        return len(items)

    async def _take(self, items: list[Item], claimed: bool) -> None:
        """Queue each item behind its chat's, bury the worn out, give back a chat's excess.

        A claimed entry whose chat's previous entry is still pending and not in our hand
        (given back, or worked on elsewhere) is given back too: claims come in order of
        idleness, not of arrival, and the chat's order must hold.
        """
        in_hand = {item.entry_id for chat in self._chats.values() for item in chat.queue}
        waiting_for = (
            await self._pending.still_pending(
                [
                    item.after_entry
                    for item in items
                    if claimed and item.after_entry and item.after_entry not in in_hand
                ]
            )
            if claimed
            else set()
        )
        aside: list[Item] = []
        now = time.monotonic()
        for item in items:
            if not item.fields or item.entry_id in in_hand:
                continue  # trimmed from the stream meanwhile, or claimed back while in hand
            if item.tries > self.max_tries:
                await self.bury(
                    item, f"tried {item.tries - 1} times without success", "too many tries"
                )
                continue
            chat = self._chats.setdefault(item.chat, _Chat())
            behind = (
                item.after_entry in waiting_for and item.after_entry not in in_hand
                if claimed
                else chat.aside_until > now
            )
            if behind or len(chat.queue) >= self.chat_in_hand:
                aside.append(item)
                chat.aside_until = (
                    now + (self.claim_idle_ms - self.set_aside_ms) / 1000 + 2 * self.claim_every
                )
                continue
            chat.queue.append(item)
            in_hand.add(item.entry_id)
            self._in_hand += 1
            if chat.runner is None:
                chat.runner = asyncio.create_task(self._run_chat(item.chat, chat))
        for chat_id in [key for key, chat in self._chats.items() if not chat.queue]:
            if self._chats[chat_id].aside_until <= now:
                del self._chats[chat_id]
        if aside:
            await self._pending.give_back(aside, self.set_aside_ms)

    async def _run_chat(self, chat_id: str, chat: _Chat) -> None:
        """Handle a chat's entries in hand one after another."""
        try:
            while chat.queue and not self._stopping:
                item = chat.queue[0]
                handled = False
                try:
                    handled = await self._handle_item(item)
                except _EarlierInHand:
                    # Claimed after this one was read: the chat's earlier updates go
                    # first, in the order they were sent.
                    in_order = sorted(chat.queue, key=_sent_order)
                    chat.queue.clear()
                    chat.queue.extend(in_order)
                    continue
                except RedisError:
                    # Left pending: claimed and handled again once Redis answers.
                    logger.warning(
                        "update %s left pending: Redis failed", item.update_id, exc_info=True
                    )
                except Exception:
                    # Not the handler's error (that one is buried): ours. The runner must
                    # go on, or the chat's entries would sit in hand, touched, forever.
                    logger.exception("update %s left pending", item.update_id)
                chat.queue.popleft()
                self._in_hand -= 1
                if not handled and chat.queue:
                    await self._give_back_chat(chat)
                self._progress.set()
        finally:
            chat.runner = None

    def _earlier_in_hand(self, item: Item) -> bool:
        """Tell whether an earlier update of the item's chat is queued behind it here."""
        chat = self._chats.get(item.chat)
        queued = chat.queue if chat is not None else ()
        return any(_sent_order(other) < _sent_order(item) for other in queued)

    async def _give_back_chat(self, chat: _Chat) -> None:
        """Give back the chat's entries behind one left pending: they must wait for it.

        They come back by claim only after it (see _take), so the chat keeps its order.
        """
        later = list(chat.queue)
        chat.queue.clear()
        self._in_hand -= len(later)
        chat.aside_until = time.monotonic() + self.claim_idle_ms / 1000 + 2 * self.claim_every
        try:
            await self._pending.give_back(later, self.set_aside_ms)
        except RedisError:
            pass  # not touched any more: claimed once idle all the same

    async def _handle_item(self, item: Item) -> bool:
        """Handle one entry; False if it was left pending (an outage, a duplicate)."""
        async with self._capacity.slot(item.entry_id) as slot:
            return await self._handle_entry(item, slot)

    async def _handle_entry(self, item: Item, slot: Slot) -> bool:
        done_key = keys.UPDATE_DONE.format(update_id=item.update_id)
        previous = item.fields.get("after", "")
        previous_done = keys.UPDATE_DONE.format(update_id=previous) if previous else ""
        waited, pause = 0.0, 0.005
        while True:
            state = await self._begin(
                keys=[done_key, item.lock_key, previous_done], args=[self.name, self.lock_ms]
            )
            if state != "wait":
                break
            if self._earlier_in_hand(item):
                raise _EarlierInHand(item.update_id)
            if waited > self.order_wait:
                logger.warning(
                    "update %s goes ahead of update %s of the same chat", item.update_id, previous
                )
                previous_done = ""
                continue
            # Another replica handles the chat's previous update: let it finish first.
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.2)
        if state == "busy":
            return False  # a duplicate handled elsewhere; claimed again later, then 'done'
        if state == "done":
            UPDATES.labels(outcome="duplicate").inc()
            await self._finish(item.entry_id, done_key, item.lock_key)
            return True
        try:
            update = json.loads(item.fields.get("update", ""))
        except ValueError as error:
            await self.bury(item, f"not JSON: {error}", "unparseable")
            return True
        await slot.start_working()
        try:
            with HANDLER_SECONDS.time():
                await self.handle(update)
        except Held as held:
            # A rate limit, not a failure: back to the stream with this delivery not
            # counted, claimable once the wait is over (or after the usual idle time).
            UPDATES.labels(outcome="deferred").inc()
            sooner_ms = max(0, self.claim_idle_ms - int(held.wait_seconds * 1000))
            await self._pending.give_back([item], sooner_ms, release_locks=True)
            return False
        except Deferred:
            # Redis or Telegram was away: not done; the entry stays pending and is
            # claimed and handled again once idle, up to max_tries deliveries.
            UPDATES.labels(outcome="deferred").inc()
            await self._pending.release_lock(item)
            return False
        except RedisError:
            raise  # as above, and this consumer backs off too
        except BadUpdate as error:
            await self.bury(item, str(error) or type(error).__name__, "unparseable")
            return True
        except Exception as error:
            # A bug, not an outage: handling it again would fail again. Set it aside,
            # or it would come back forever.
            logger.exception("update %s could not be handled", item.update_id)
            await self.bury(item, f"{type(error).__name__}: {error}", "failed", log=False)
            return True
        UPDATES.labels(outcome="handled").inc()
        await self._finish(item.entry_id, done_key, item.lock_key)
        return True

    async def bury(self, item: Item, reason: str, kind: str, log: bool = True) -> None:
        """Move a poison update to the dead-letter stream and acknowledge it, once."""
        await self._dead.bury(item.entry_id, item.fields, item.tries, reason, kind, log)

    async def _finish(self, entry_id: str, done_key: str, lock_key: str) -> None:
        """Mark an update done and acknowledge it, waiting out a short Redis outage.

        The update's effects have happened: giving up here would leave the entry
        pending and have it handled, and answered, a second time. The done mark, the
        lock's release and the XACK are one script (one round trip, all or nothing);
        the script also says whether a Redis replica is attached, and if one is, the
        writes are acknowledged by it (WAIT, on the connection that wrote them) before
        the update counts as finished: after a failover the replica still knows the
        update was done, or still has it pending, never acknowledged but not done.
        """
        deadline = time.monotonic() + FINISH_RETRY_SECONDS
        while True:
            try:
                await self._finish_script.run(
                    [done_key, lock_key, keys.UPDATES],
                    [keys.UPDATE_DONE_SECONDS, keys.GROUP, entry_id],
                )
                return
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(self.error_backoff / 2)

    async def _touch(self) -> None:
        """Reset the idle time of the entries in hand and renew their locks, forever."""
        while True:
            await asyncio.sleep(self.touch_every)
            items = [item for chat in self._chats.values() for item in chat.queue]
            if not items:
                continue
            try:
                await self._pending.touch(items, self.lock_ms)
            except RedisError:
                pass  # Redis is away; the work in hand notices and waits or backs off
            except Exception:
                # Never end this loop: untouched entries in hand would be claimed away.
                logger.exception("touching the updates in hand failed")

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


async def _wait_or_stop(awaitable: Awaitable[Any], stop: asyncio.Event | None) -> Any:
    """Await, unless ``stop`` is set first: then cancel it and return None."""
    work = asyncio.ensure_future(awaitable)
    if stop is None:
        return await work
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if work.done():
        return work.result()
    # A read cut off here may have been delivered: it stays pending, claimed once idle.
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return None


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass  # the usual case: slept the whole time


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
