"""The shared rate limiter against a real redis-server, and against the strict fake Telegram.

The booking tests drive ``RedisRateLimiter`` directly and read its buckets in Redis; the
margin test sends through python-telegram-bot with the limiter, over HTTP, to a fake
that counts Telegram's limits strictly, with a delay of its own added to every request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from telegram.ext import ExtBot

from fakes.telegram_api import FakeTelegram
from newsbot import keys
from newsbot.cluster.ratelimit import (
    RedisRateLimiter,
    SendDeferred,
    interval_ms,
    retry_after_seconds,
)
from newsbot.config import Settings
from newsbot.transport import AiohttpRequest

REAL = Settings()  # Telegram's figures: 30/s overall, 1/s a chat, 20/min a group
# Seconds between two sends overall, at those figures less the margin.
NEXT = interval_ms(1000, 30 * keys.RATE_MARGIN_GLOBAL) / 1000


def limiter(
    redis: aioredis.Redis, max_wait_ms: int = keys.RATE_MAX_WAIT_MS, **limits: float
) -> RedisRateLimiter:
    return RedisRateLimiter(redis, dataclasses.replace(REAL, **limits), max_wait_ms)


async def redis_now_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.mark.parametrize(
    "window_ms, allowed, expected",
    [
        (1000, 30 * keys.RATE_MARGIN_GLOBAL, 40),  # 25.5/s booked as one per 40 ms
        (60_000, 20 * keys.RATE_MARGIN_GROUP, 3158),  # 19/min
        (1000, 1.0, 1000),
        (1000, 1e-300, 3_600_000),  # never longer than an hour
        (1000, 0.0, 3_600_000),
        (1000, float("inf"), 1),
        (1000, float("nan"), 3_600_000),
    ],
)
def test_intervals_round_up_and_stay_in_range(window_ms, allowed, expected) -> None:
    assert interval_ms(window_ms, allowed) == expected


@pytest.mark.parametrize(
    "retry_after, expected",
    [
        (7, 7.0),
        (timedelta(seconds=60), 60.0),
        (0, 1.0),
        (-5, 1.0),
        (99_999_999, 3600.0),
        (float("inf"), 3600.0),
        (float("nan"), 1.0),
        ("soon", 1.0),
    ],
)
def test_retry_after_is_read_defensively_and_clamped(retry_after, expected) -> None:
    assert retry_after_seconds(retry_after) == expected


async def test_bookings_are_spaced_by_the_limit_with_its_margin(redis) -> None:
    # Two a second overall, booked by five chats at once: one slot per interval, in
    # order, each chat's own bucket booked at that same slot.
    # (A chat's bucket lives its 10 s interval past its slot: still there to read.)
    paced = limiter(redis, send_per_second=2, send_per_chat_second=0.1)
    interval = interval_ms(1000, 2 * keys.RATE_MARGIN_GLOBAL)
    assert interval == 589  # 2/s less the margin, rounded up
    chats = [11, 12, 13, 14, 15]
    await asyncio.gather(*(paced.wait_for_slot(chat) for chat in chats))
    slots = sorted(
        [int(await redis.get(keys.RATE_CHAT.format(chat_id=chat))) - 10_000 for chat in chats]
    )
    assert [b - a for a, b in zip(slots, slots[1:], strict=False)] == [interval] * 4
    assert int(await redis.get(keys.RATE_GLOBAL)) == slots[-1] + interval


async def test_a_chat_on_hold_is_deferred_and_another_chat_goes_at_once(redis) -> None:
    paced = limiter(redis)
    assert await paced.hold(1, 60) is False  # one chat's 429: the bot is not limited
    with pytest.raises(SendDeferred) as deferred:
        await paced.wait_for_slot(1)
    assert deferred.value.wait_seconds > 50
    # The held chat booked nothing: the global bucket is free for everyone else.
    assert await redis.get(keys.RATE_GLOBAL) is None
    assert await paced.wait_for_slot(2) == 0
    assert await paced.wait_for_slot(-3) <= NEXT  # nor is a group: the next slot


async def test_a_groups_429_holds_its_group_bucket(redis) -> None:
    paced = limiter(redis, max_wait_ms=2000)
    await paced.hold(-5, 5)
    with pytest.raises(SendDeferred):
        await paced.wait_for_slot(-5)
    assert await paced.wait_for_slot(5) == 0  # the private chat of the same number


async def test_429s_to_several_chats_hold_the_whole_bot(redis) -> None:
    paced = limiter(redis)
    assert await paced.hold(1, 30) is False
    assert await paced.hold(1, 30) is False  # the same chat again is still one chat
    assert await paced.hold(2, 30) is False
    assert await paced.hold(3, 30) is True
    with pytest.raises(SendDeferred):
        await paced.wait_for_slot(4)


async def test_a_chats_queue_does_not_push_the_global_bucket(redis) -> None:
    # Chat 1 sent a moment ago; its next slot is a second off. Chat 2 must not wait
    # for it: the global bucket is booked only when a chat can really send.
    paced = limiter(redis)
    assert await paced.wait_for_slot(1) == 0
    waiting = asyncio.create_task(paced.wait_for_slot(1))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert await paced.wait_for_slot(2) <= NEXT
    assert not waiting.done()
    await waiting


async def test_a_booking_of_an_old_configuration_is_not_inherited(redis) -> None:
    # One message per 10,000 s overall books the global bucket an hour ahead (the
    # longest interval there is)...
    old = limiter(redis, max_wait_ms=500, send_per_second=0.0001)
    assert await old.wait_for_slot(1) == 0
    assert int(await redis.get(keys.RATE_GLOBAL)) - await redis_now_ms(redis) > 3_000_000
    # ...and a restart with the right value cuts it back to what it could book itself.
    new = limiter(redis, max_wait_ms=500)
    try:
        await new.wait_for_slot(2)
    except SendDeferred:
        pass  # the cut-back booking may still be a little too far off: asked again below
    bound = 500 + NEXT * 1000
    assert int(await redis.get(keys.RATE_GLOBAL)) - await redis_now_ms(redis) <= bound
    await asyncio.sleep(bound / 1000)
    assert await new.wait_for_slot(3) == 0


async def test_a_send_never_waits_past_the_limit(redis) -> None:
    # One message per 4 s in a chat, at most 6 s of waiting: of three sends at once,
    # the third (8 s off) is deferred instead of slept.
    paced = limiter(redis, max_wait_ms=6000, send_per_chat_second=0.25)
    results = await asyncio.gather(
        *(paced.wait_for_slot(7) for _ in range(3)), return_exceptions=True
    )
    assert [type(result) for result in results].count(SendDeferred) == 1
    assert [type(result) for result in results].count(float) == 2


class JitteryRequest(AiohttpRequest):
    """HTTP to the fake with up to ``jitter`` seconds of extra delay per request.

    Stands for what separates a booked slot from Telegram's clock: event-loop lag on a
    loaded machine, a slow network, a replica paused by its host.
    """

    def __init__(self, jitter: float, seed: int) -> None:
        super().__init__(32)
        self.jitter = jitter
        self.random = random.Random(seed)

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        await asyncio.sleep(self.random.uniform(0, self.jitter))
        return await super().do_request(*args, **kwargs)


async def test_three_replicas_with_jitter_never_meet_the_strict_limits(
    redis_url, untraced
) -> None:
    # Three bots (replicas) share one Redis; each send reaches the fake up to 150 ms
    # after its slot. 90 private chats get 2 messages each, 2 groups 4 each.
    private = [(5000 + i, n) for i in range(90) for n in range(2)]
    groups = [(-7000 - g, n) for g in range(2) for n in range(4)]
    messages = private + groups
    random.Random(1).shuffle(messages)
    with FakeTelegram(enforce_limits=True) as fake:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
        bots = [
            ExtBot(
                fake.token,
                base_url=f"{fake.url}/bot",
                request=JitteryRequest(0.15, seed),
                rate_limiter=RedisRateLimiter(client, REAL, max_wait_ms=60_000),
            )
            for seed, client in enumerate(clients)
        ]
        try:
            for bot in bots:
                await bot.initialize()
            await asyncio.gather(
                *(
                    bots[i % 3].send_message(chat_id, f"message {n}")
                    for i, (chat_id, n) in enumerate(messages)
                )
            )
        finally:
            for bot in bots:
                await bot.shutdown()
            for client in clients:
                await client.aclose()
        assert fake.too_many == 0
        assert len(fake.sent()) == len(messages)
