"""What must survive a failover is acknowledged by a Redis replica (WAIT) first.

A master, a replica and three sentinels (tests/sentinel_support.py). With the replica
running, what the poller appended, what the webhook stored and the done mark of a
handled update are on the replica by the time the bot goes on. With the replica
stopped (SIGSTOP: the master still counts it as attached), each of those writes waits
out its timeout and is counted as unacknowledged, one per write, and the bot goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from telegram import Bot

from newsbot import keys
from newsbot.cluster.poller import Poller
from newsbot.cluster.stream import Consumer
from newsbot.config import Settings
from newsbot.store import Store, connect
from newsbot.webhook import Webhook
from sentinel_support import SentinelSet

REDIS_PASSWORD = "srv-pw-77aa"
ACK_MS = 300


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with SentinelSet(tmp_path, REDIS_PASSWORD) as cluster:
        yield cluster


@pytest.fixture
async def master(sentinels: SentinelSet) -> AsyncIterator[aioredis.Redis]:
    store = Store(connect(Settings(redis_url=sentinels.url()), 20))
    yield store.redis
    await store.close()


def timeouts() -> float:
    return REGISTRY.get_sample_value("newsbot_replica_ack_timeouts_total") or 0.0


def update(update_id: int, chat_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "text": "hi",
            "chat": {"id": chat_id, "type": "private"},
        },
    }


async def on_replica(sentinels: SentinelSet, key: str) -> Any:
    with sentinels.replica.client() as replica:
        return replica.get(key) if not key.endswith("updates") else replica.xlen(key)


async def test_appends_stores_and_done_marks_wait_for_the_replica(
    telegram, sentinels: SentinelSet, master: aioredis.Redis
) -> None:
    bot = Bot(telegram.token, base_url=f"{telegram.url}/bot")
    poller = Poller(bot, master, "host-1-abc", ack_timeout_ms=ACK_MS)
    webhook = Webhook(master, "https://bot.example.org/telegram", "s", ack_timeout_ms=ACK_MS)
    handled: list[int] = []

    async def handle(fields: dict[str, Any]) -> None:
        handled.append(fields["update_id"])

    consumer = Consumer(master, "c1", handle, ack_timeout_ms=ACK_MS, block_ms=100)
    await consumer.ensure_group()

    # The replica running: each write is on it when the call returns.
    before = timeouts()
    await poller.append([update(1, 10)])
    assert await on_replica(sentinels, keys.UPDATES) == 1
    assert await webhook.store(update(2, 20)) is True
    assert await on_replica(sentinels, f"{keys.WEBHOOK_SEEN}2") == "1"
    assert await on_replica(sentinels, keys.UPDATES) == 2
    await consumer.run(asyncio.Event(), once=True)
    assert sorted(handled) == [1, 2]
    for update_id in ("1", "2"):
        done = keys.UPDATE_DONE.format(update_id=update_id)
        assert await on_replica(sentinels, done) == "1"
    assert timeouts() == before

    # The replica stopped: one unacknowledged write counted per append, store, finish.
    assert sentinels.replica.process is not None
    os.kill(sentinels.replica.process.pid, signal.SIGSTOP)
    try:
        await poller.append([update(3, 10)])
        assert timeouts() == before + 1
        assert await webhook.store(update(4, 20)) is True
        assert timeouts() == before + 2
        await consumer.run(asyncio.Event(), once=True)
        assert sorted(handled) == [1, 2, 3, 4]
        assert timeouts() == before + 4
        # The bot went on: the entries are acknowledged on the master.
        assert (await master.xpending(keys.UPDATES, keys.GROUP))["pending"] == 0
    finally:
        os.kill(sentinels.replica.process.pid, signal.SIGCONT)


async def test_a_replica_that_attaches_after_finishes_without_one_is_waited_for(
    telegram, sentinels: SentinelSet, master: aioredis.Redis
) -> None:
    """The consumer sends WAIT only while a replica is attached: it learns that from its
    finish script, and must not go on skipping WAIT once one is (here: stopped, so the
    WAIT times out and is counted)."""
    bot = Bot(telegram.token, base_url=f"{telegram.url}/bot")
    poller = Poller(bot, master, "host-1-abc", ack_timeout_ms=ACK_MS)
    handled: list[int] = []

    async def handle(fields: dict[str, Any]) -> None:
        handled.append(fields["update_id"])

    consumer = Consumer(master, "c1", handle, ack_timeout_ms=ACK_MS, block_ms=100)
    await consumer.ensure_group()
    await poller.append([update(1, 10)])
    assert sentinels.replica.process is not None
    os.kill(sentinels.replica.process.pid, signal.SIGSTOP)
    try:
        # As if the last finish had seen no replica attached.
        consumer._finish_script.replicas_attached = False
        before = timeouts()
        await consumer.run(asyncio.Event(), once=True)
        assert handled == [1]
        assert timeouts() == before + 1
        assert (await master.xpending(keys.UPDATES, keys.GROUP))["pending"] == 0
    finally:
        os.kill(sentinels.replica.process.pid, signal.SIGCONT)


async def test_a_push_stored_as_a_replica_attaches_is_stored_once_and_waited_for(
    sentinels: SentinelSet, master: aioredis.Redis
) -> None:
    """The webhook learns of the replica from its script, runs it again for WAIT, and
    answers with what the first run did (the second finds the update stored)."""
    webhook = Webhook(master, "https://bot.example.org/telegram", "s", ack_timeout_ms=ACK_MS)
    # As if the last push had seen no replica attached.
    webhook._append.replicas_attached = False
    before = timeouts()
    assert await webhook.store(update(5, 30)) is True
    assert await on_replica(sentinels, f"{keys.WEBHOOK_SEEN}5") == "1"
    assert await master.xlen(keys.UPDATES) == 1
    assert timeouts() == before
    assert await webhook.store(update(5, 30)) is False  # Telegram's retry of it
    assert await master.xlen(keys.UPDATES) == 1
