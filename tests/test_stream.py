"""The update consumer on a real redis-server, driven directly with ~50 ms timings.

Updates go into the stream through the poller's own append (so each names its chat's
previous update, as in production); the handler is a small function of the test that
records what it was given, and waits where the bot would wait for Telegram.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
import redis.asyncio as aioredis
from telegram import Bot

from cluster_support import (
    metric,
)
from harness import text_update
from newsbot import keys
from newsbot.cluster.capacity import committing, waiting
from newsbot.cluster.poller import Poller
from newsbot.cluster.stream import Consumer
from newsbot.errors import BadUpdate, Deferred, Held

# Short timings: an entry left by a consumer is claimable after 300 ms idle, a given-back
# one after 100 ms; claims are looked for every 50 ms.
FAST = {
    "block_ms": 50,
    "claim_every": 0.05,
    "claim_idle_ms": 300,
    "set_aside_ms": 200,
    "order_wait": 2.0,
    "drain_grace": 0.2,
    "error_backoff": 0.05,
}

Handle = Callable[[dict[str, Any]], Awaitable[None]]


async def append(redis: aioredis.Redis, updates: list[dict[str, Any]]) -> None:
    """Put updates in the stream as the poller does."""
    poller = Poller(Bot("123:abc"), redis, "test-poller")
    await poller.append(updates)


class Consumers:
    """Consumers running as tasks of the test, stopped (drained) at the end."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(self, handle: Handle, name: str = "c1", **options: Any) -> Consumer:
        consumer = Consumer(self.redis, name, handle, **{**FAST, **options})
        await consumer.ensure_group()
        stop = asyncio.Event()
        self.running.append((stop, asyncio.create_task(consumer.run(stop))))
        return consumer

    async def stop(self, index: int = 0) -> None:
        stop, task = self.running[index]
        stop.set()
        await asyncio.wait_for(task, 10)

    async def stop_all(self) -> None:
        for stop, _task in self.running:
            stop.set()
        await asyncio.gather(*(task for _, task in self.running), return_exceptions=True)


@pytest.fixture
async def consumers(redis: aioredis.Redis) -> AsyncIterator[Consumers]:
    running = Consumers(redis)
    yield running
    await running.stop_all()


class Recorder:
    """A handler that records (chat, update id) of each update it finished."""

    def __init__(self, pace: float = 0.0) -> None:
        self.pace = pace
        self.done: list[tuple[int, int]] = []
        self.calls: dict[int, int] = {}
        self.changed = asyncio.Condition()

    async def __call__(self, update: dict[str, Any]) -> None:
        update_id = update["update_id"]
        self.calls[update_id] = self.calls.get(update_id, 0) + 1
        if self.pace:
            # Where the bot waits for its chat's rate-limit slot.
            async with waiting():
                await asyncio.sleep(self.pace)
        chat = update["message"]["chat"]["id"] if "message" in update else 0
        async with self.changed:
            self.done.append((chat, update_id))
            self.changed.notify_all()

    def of(self, chat: int) -> list[int]:
        return [update_id for done_chat, update_id in self.done if done_chat == chat]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout)


async def pending(redis: aioredis.Redis) -> list[dict[str, Any]]:
    return await redis.xpending_range(keys.UPDATES, keys.GROUP, "-", "+", 100)


async def settled(redis: aioredis.Redis, timeout: float = 10) -> None:
    async def wait() -> None:
        while True:
            groups = await redis.xinfo_groups(keys.UPDATES)
            (group,) = [g for g in groups if g["name"] == keys.GROUP]
            # Every entry read (Redis 6.2 has no "lag" yet) and acknowledged.
            stream = await redis.xinfo_stream(keys.UPDATES)
            read = group["last-delivered-id"] == stream["last-generated-id"]
            if not group["pending"] and read:
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout)


def dead_count(reason: str) -> float:
    text = prometheus_client.generate_latest().decode()
    return metric(text, "newsbot_dead_updates_total", f'reason="{reason}"') or 0


# --- fair scheduling ------------------------------------------------------------------


async def test_one_chats_backlog_does_not_keep_another_chat_waiting(redis, consumers):
    # 40 updates of one chat, paced like Telegram's 1 a second in a chat (here 10 ms),
    # then one of another chat. A replica holds 10 entries at most: without a per-chat
    # share, the flood would fill it and the other chat would wait for ~30 of them.
    recorder = Recorder(pace=0.01)
    flood, other = 1001, 2002
    await append(redis, [text_update(i, flood) for i in range(1, 41)] + [text_update(41, other)])
    await consumers.start(recorder, max_in_hand=10, chat_in_hand=4, max_running=2)

    await recorder.wait_for(lambda: recorder.of(other) == [41])
    assert len(recorder.of(flood)) < 10
    await recorder.wait_for(lambda: len(recorder.of(flood)) == 40)
    assert recorder.of(flood) == list(range(1, 41))  # in order, each once
    await settled(redis)
    assert all(count == 1 for count in recorder.calls.values())


async def test_a_backlog_given_back_does_not_keep_other_claims_from_coming(redis, consumers):
    # The other chat's update met an outage once, so only a claim brings it back; the
    # flood's given-back entries come before it in the stream, again and again. Claims
    # go round the whole pending list, so it is not left until the flood is over.
    recorder = Recorder(pace=0.002)
    flood, other = 1001, 2002
    outage = [True]

    async def handle(update: dict[str, Any]) -> None:
        if update["message"]["chat"]["id"] == other and outage:
            outage.clear()
            raise Deferred("Redis is away")
        await recorder(update)

    await append(redis, [text_update(i, flood) for i in range(1, 41)] + [text_update(41, other)])
    await consumers.start(handle, max_in_hand=8, chat_in_hand=2, max_running=2)
    await recorder.wait_for(lambda: recorder.of(other) == [41], timeout=20)
    assert len(recorder.of(flood)) < 20
    await recorder.wait_for(lambda: len(recorder.of(flood)) == 40, timeout=20)
    assert recorder.of(flood) == list(range(1, 41))


async def test_a_handler_waiting_for_telegram_does_not_hold_capacity(redis, consumers):
    # One handler slot only. Chat A's handler waits (for a rate-limit slot) until chat
    # B's update was handled: that can only happen if the wait gave the slot away.
    b_done = asyncio.Event()
    order: list[str] = []

    async def handle(update: dict[str, Any]) -> None:
        if update["message"]["chat"]["id"] == 1:
            async with waiting():
                await asyncio.wait_for(b_done.wait(), 5)
            order.append("A")
        else:
            order.append("B")
            b_done.set()

    await append(redis, [text_update(1, 1), text_update(2, 2)])
    await consumers.start(handle, max_running=1)
    await settled(redis)
    assert order == ["B", "A"]


# --- poison updates -------------------------------------------------------------------


async def test_an_unreadable_update_is_set_aside_once_and_the_next_is_handled(redis, consumers):
    recorder = Recorder()
    before = dead_count("unparseable")

    async def handle(update: dict[str, Any]) -> None:
        if "poll" in update:
            raise BadUpdate(f"update {update['update_id']} cannot be parsed")
        await recorder(update)

    poll = {"update_id": 7, "poll": {"id": "1", "question": "?", "options": []}}
    await append(redis, [poll, text_update(8, 5)])
    await consumers.start(handle)
    await recorder.wait_for(lambda: recorder.of(5) == [8])
    await settled(redis)

    (dead,) = await redis.xrange(keys.DEAD_UPDATES)
    assert dead[1]["update_id"] == "7" and json.loads(dead[1]["update"]) == poll
    assert "cannot be parsed" in dead[1]["reason"]
    assert 0 < await redis.ttl(keys.DEAD_UPDATES) <= keys.DEAD_UPDATES_SECONDS
    assert dead_count("unparseable") == before + 1

    # A restart does not bring it back: a new consumer handles only the new update.
    await consumers.stop()
    await append(redis, [text_update(9, 5)])
    await consumers.start(handle, name="c2")
    await recorder.wait_for(lambda: recorder.of(5) == [8, 9])
    assert len(await redis.xrange(keys.DEAD_UPDATES)) == 1
    assert dead_count("unparseable") == before + 1


async def test_an_update_that_fails_by_outage_every_time_is_tried_a_bounded_number_of_times(
    redis, consumers
):
    recorder = Recorder()
    tries: list[int] = []
    before = dead_count("too many tries")

    async def handle(update: dict[str, Any]) -> None:
        if update["update_id"] == 1:
            tries.append(1)
            raise Deferred("Telegram is away")
        await recorder(update)

    # The chat's next update waits for the poison one, then goes on.
    await append(redis, [text_update(1, 5), text_update(2, 5), text_update(3, 6)])
    await consumers.start(handle, max_tries=3)
    await recorder.wait_for(lambda: recorder.of(5) == [2], timeout=15)
    await settled(redis)
    assert len(tries) == 3
    (dead,) = await redis.xrange(keys.DEAD_UPDATES)
    assert dead[1]["update_id"] == "1" and dead[1]["deliveries"] == "4"
    assert dead[1]["reason"] == "tried 3 times without success"
    assert dead_count("too many tries") == before + 1


async def test_an_update_held_by_a_rate_limit_is_not_counted_as_a_failed_try(redis, consumers):
    recorder = Recorder()
    holds: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        # Telegram holds the chat for longer than the tries would last: each handling
        # is held, and then the wait is over.
        if update["update_id"] == 1 and len(holds) < 6:
            holds.append(1)
            raise Held("the chat waits out a 429", 0.05)
        await recorder(update)

    await append(redis, [text_update(1, 5), text_update(2, 5)])
    await consumers.start(handle, max_tries=3)
    await recorder.wait_for(lambda: recorder.of(5) == [1, 2], timeout=15)
    await settled(redis)
    assert len(holds) == 6
    assert await redis.xrange(keys.DEAD_UPDATES) == []


async def test_an_update_that_crashes_its_handler_is_set_aside_at_once(redis, consumers):
    recorder = Recorder()
    calls: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        if update["update_id"] == 1:
            calls.append(1)
            raise KeyError("from")
        await recorder(update)

    await append(redis, [text_update(1, 5), text_update(2, 5)])
    await consumers.start(handle)
    await recorder.wait_for(lambda: recorder.of(5) == [2])
    await settled(redis)
    assert calls == [1]
    (dead,) = await redis.xrange(keys.DEAD_UPDATES)
    assert dead[1]["reason"] == "KeyError: 'from'"


# --- claims, deferrals, order -----------------------------------------------------------


async def test_a_dead_consumers_entry_is_claimed_and_handled_once(redis, consumers):
    recorder = Recorder()
    await append(redis, [text_update(1, 5), text_update(2, 6)])
    await Consumer(redis, "dead", recorder).ensure_group()
    # A replica read both and died before handling them: they stay pending with it.
    await redis.xreadgroup(keys.GROUP, "dead", {keys.UPDATES: ">"}, count=10)
    assert len(await pending(redis)) == 2

    await consumers.start(recorder, name="alive")
    await settled(redis)
    assert sorted(recorder.calls.items()) == [(1, 1), (2, 1)]


async def test_a_dead_consumers_entry_claimed_behind_its_chats_next_one_goes_first(
    redis, consumers
):
    recorder = Recorder()
    await append(redis, [text_update(1, 5)])
    await Consumer(redis, "dead", recorder).ensure_group()
    await redis.xreadgroup(keys.GROUP, "dead", {keys.UPDATES: ">"}, count=10)
    # The chat's next update is read at once; its previous one comes only by a claim,
    # once idle, into the same hand. Waiting for it out of order would take a minute.
    await append(redis, [text_update(2, 5)])
    await consumers.start(recorder, name="alive", order_wait=60.0)
    await recorder.wait_for(lambda: len(recorder.of(5)) == 2)
    assert recorder.of(5) == [1, 2]
    await settled(redis)
    assert recorder.calls == {1: 1, 2: 1}


async def test_a_claimed_entry_goes_before_its_chats_later_one_waiting_on_another_consumer(
    redis, consumers
):
    recorder = Recorder()
    await append(redis, [text_update(1, 5)])
    await Consumer(redis, "dead", recorder).ensure_group()
    await redis.xreadgroup(keys.GROUP, "dead", {keys.UPDATES: ">"}, count=10)
    # Update 2 is in another consumer's hand, waiting for 1; that one claims nothing and
    # reads nothing more.
    await append(redis, [text_update(2, 5)])
    await consumers.start(
        recorder, name="holder", max_in_hand=1, claim_idle_ms=60_000, order_wait=60.0
    )
    while not [entry for entry in await pending(redis) if entry["consumer"] == "holder"]:
        await asyncio.sleep(0.01)
    # Update 3 is read here and waits for 2; then 1 comes by claim, behind it (its idle
    # time starts again now, as if the dead consumer had just touched it).
    (dead_entry,) = [entry for entry in await pending(redis) if entry["consumer"] == "dead"]
    await redis.xclaim(
        keys.UPDATES, keys.GROUP, "dead", 0, [dead_entry["message_id"]], justid=True
    )
    await append(redis, [text_update(3, 5)])
    await consumers.start(recorder, name="claimer", order_wait=60.0)
    await recorder.wait_for(lambda: len(recorder.of(5)) == 3)
    assert recorder.of(5) == [1, 2, 3]
    await settled(redis)


async def test_a_deferred_update_stays_pending_and_is_handled_later(redis, consumers):
    recorder = Recorder()
    outage = asyncio.Event()
    deferrals = 0

    async def handle(update: dict[str, Any]) -> None:
        nonlocal deferrals
        if not outage.is_set():
            deferrals += 1
            raise Deferred("Redis is away")
        await recorder(update)

    await append(redis, [text_update(1, 5)])
    await consumers.start(handle)
    while not deferrals:
        await asyncio.sleep(0.01)
    (_entry,) = await pending(redis)  # not acknowledged, not done
    assert not await redis.exists(keys.UPDATE_DONE.format(update_id=1))
    outage.set()
    await recorder.wait_for(lambda: recorder.of(5) == [1])
    await settled(redis)
    assert recorder.calls == {1: 1}


async def test_each_chats_updates_keep_their_order_across_two_consumers(redis, consumers):
    recorder = Recorder()
    by_consumer: dict[str, int] = {"c1": 0, "c2": 0}

    def counted(name: str) -> Handle:
        async def handle(update: dict[str, Any]) -> None:
            by_consumer[name] += 1
            async with waiting():  # uneven: a later update could overtake an earlier one
                await asyncio.sleep(0.004 * (update["update_id"] % 5))
            await recorder(update)

        return handle

    # Each holds 10 at most, and 13 chats do not divide into that: a chat's updates
    # alternate between the two.
    await consumers.start(counted("c1"), name="c1", max_running=4, max_in_hand=10)
    await consumers.start(counted("c2"), name="c2", max_running=4, max_in_hand=10)
    chats = range(100, 113)
    await append(
        redis,
        [text_update(100 * round_ + chat - 99, chat) for round_ in range(6) for chat in chats],
    )
    await recorder.wait_for(lambda: len(recorder.done) == 6 * len(chats))
    await settled(redis)
    for chat in chats:
        assert recorder.of(chat) == sorted(recorder.of(chat))
    assert all(count == 1 for count in recorder.calls.values())
    assert by_consumer["c1"] and by_consumer["c2"]  # both took part


# --- stopping -------------------------------------------------------------------------


async def test_stopping_interrupts_the_blocking_read_at_once(redis):
    consumer = Consumer(redis, "c1", Recorder(), **{**FAST, "block_ms": 60_000})
    await consumer.ensure_group()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.sleep(0.2)  # now inside XREADGROUP BLOCK 60000
    stop.set()
    # Far less than the block, and than the client's socket timeout that would also end
    # the read.
    done, _ = await asyncio.wait([task], timeout=2)
    assert task in done
    task.result()


async def test_an_update_waiting_for_telegram_at_stop_is_left_for_another_consumer(
    redis, consumers
):
    forever = asyncio.Event()
    handled: list[str] = []

    async def patient(update: dict[str, Any]) -> None:
        async with waiting():  # e.g. a retry_after of a minute
            await forever.wait()
        handled.append("first")

    async def quick(update: dict[str, Any]) -> None:
        handled.append("second")

    await append(redis, [text_update(1, 5)])
    await consumers.start(patient, name="c1")
    while not await redis.exists(keys.UPDATE_LOCK.format(update_id=1)):
        await asyncio.sleep(0.01)
    await consumers.stop(0)
    (entry,) = await pending(redis)
    assert entry["consumer"] == "c1" and entry["times_delivered"] == 0
    assert not await redis.exists(keys.UPDATE_DONE.format(update_id=1))
    assert not await redis.exists(keys.UPDATE_LOCK.format(update_id=1))

    await consumers.start(quick, name="c2")
    await settled(redis)
    assert handled == ["second"]


async def test_a_handler_that_sent_part_of_its_reply_is_not_interrupted(redis, consumers):
    parts: list[str] = []
    second_part_may_go = asyncio.Event()
    other_interrupted = asyncio.Event()

    async def handle(update: dict[str, Any]) -> None:
        if update["message"]["chat"]["id"] == 6:
            try:  # only waits: the stop interrupts it; that tells the test it did
                async with waiting():
                    await asyncio.Event().wait()
            finally:
                other_interrupted.set()
        async with waiting(), committing():
            parts.append("first")  # accepted by Telegram
        async with waiting():  # the second part's slot: the first must not go twice
            await second_part_may_go.wait()
            async with committing():
                parts.append("second")

    await append(redis, [text_update(1, 5), text_update(2, 6)])
    await consumers.start(handle, name="c1")
    while not parts or not await redis.exists(keys.UPDATE_LOCK.format(update_id=2)):
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(consumers.stop(0))
    await asyncio.wait_for(other_interrupted.wait(), 5)
    second_part_may_go.set()
    await stopping
    assert parts == ["first", "second"]
    (left,) = await pending(redis)  # only the interrupted one, for another consumer
    assert left["message_id"] == (await redis.xrange(keys.UPDATES))[1][0]
