"""Tests of newsbot.digests: due digests flow through a bounded pool, once across replicas.

Each test wires the real pieces as a replica does (store on a real redis-server, News
over HTTP to the fake news server, the python-telegram-bot Bot against the fake
Telegram) and drives ``Digests`` with short timings. Assertions are on what the chats
received and in which order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from telegram import Bot

from harness import bot_env, wait_sent
from newsbot import keys
from newsbot.app import build_application
from newsbot.config import Settings
from newsbot.digests import Digests
from newsbot.models import Source
from newsbot.news import News
from newsbot.store import Store, connect, digest_scope

FAST_CHATS = list(range(2001, 2013))
SLOW_CHAT = 2000


def feed(titles: list[str], name: str) -> str:
    items = "".join(
        f"<item><title>{title}</title><link>https://example.org/{name}/{n}</link>"
        f"<guid>{name}-{n}</guid></item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>https://example.org/</link><description>d</description>{items}"
        f"</channel></rss>"
    )


@dataclass
class Replica:
    """What one replica's digest sender is made of."""

    store: Store
    news: News
    bot: Bot

    def digests(self, **timings: float) -> Digests:
        return Digests(self.store, self.news, self.bot, idle_seconds=0.05, **timings)


@pytest.fixture
def settings(telegram, news, redis_url) -> Settings:
    return Settings.from_env(bot_env(telegram, redis_url, news, NEWSBOT_FETCH_TIMEOUT="10"))


async def start_replica(settings: Settings) -> tuple[Replica, Any]:
    store = Store(connect(settings), settings.items_per_source)
    news = News(settings, store)
    assert settings.telegram_token is not None
    application = build_application(settings, store, news, settings.telegram_token)
    await application.initialize()
    return Replica(store, news, application.bot), application


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[list[Replica]]:
    """Two replicas' digest parts on the same Redis, fakes and settings."""
    started = [await start_replica(settings) for _ in range(2)]
    yield [replica for replica, _ in started]
    for replica, application in started:
        await application.shutdown()
        replica.news.close()
        await replica.store.close()


def source(news, path: str) -> Source:
    url = f"{news.url}{path}"
    return Source("feed", url, url)


async def subscribe(store: Store, chat_id: int, sources: list[Source], due: float) -> None:
    await store.set_sources(chat_id, sources)
    await store.subscribe(chat_id, 86_400, due)


async def test_a_slow_feed_delays_only_its_own_chats_digest(telegram, news, replicas):
    replica = replicas[0]
    news.set_route("/slow.xml", body=feed(["Slow story"], "slow"), delay=3)
    news.set_route("/fast.xml", body=feed(["Fast story"], "fast"))
    now = time.time()
    # The slow chat is due first, so it is claimed with the first fast ones.
    await subscribe(replica.store, SLOW_CHAT, [source(news, "/slow.xml")], now - 100)
    for n, chat in enumerate(FAST_CHATS):
        await subscribe(replica.store, chat, [source(news, "/fast.xml")], now - 50 + n)
    digests = replica.digests(slots=4, prefetch_seconds=0)
    stop = asyncio.Event()
    running = asyncio.create_task(digests.run(stop))
    try:
        await wait_sent(telegram, len(FAST_CHATS) + 1, timeout=30)
    finally:
        stop.set()
        await running
    order = [message.chat_id for message in telegram.sent()]
    assert sorted(order) == sorted([SLOW_CHAT, *FAST_CHATS])  # one digest each
    # Four slots and twelve fast digests: they all went while the slow feed was
    # still being read, not in batches that wait for it.
    assert order[-1] == SLOW_CHAT
    assert "Slow story" in telegram.sent(SLOW_CHAT)[0].displayed
    assert all("Fast story" in telegram.sent(chat)[0].displayed for chat in FAST_CHATS)


async def test_sources_of_digests_due_soon_are_fetched_once_ahead(telegram, news, replicas):
    replica = replicas[0]
    news.set_route("/shared.xml", body=feed(["Shared story"], "shared"))
    news.set_route("/own.xml", body=feed(["Own story"], "own"))
    later = time.time() + 60
    shared, own = source(news, "/shared.xml"), source(news, "/own.xml")
    await subscribe(replica.store, 3001, [shared, own], later)
    await subscribe(replica.store, 3002, [shared], later)
    await subscribe(replica.store, 3003, [source(news, "/far.xml")], later + 3600)
    digests = replica.digests(prefetch_seconds=120)
    assert await digests.prefetch_once() == 2  # shared once, own once; not the far one
    assert news.count("/shared.xml") == news.count("/own.xml") == 1
    assert news.count("/far.xml") == 0
    assert await digests.prefetch_once() == 0  # fetched ahead already: not read again
    # When they are due, the digests are built from what was fetched ahead.
    assert await digests.run_once(now=later) == 2
    await wait_sent(telegram, 2)
    assert "Shared story" in telegram.sent(3002)[0].displayed
    assert news.count("/shared.xml") == news.count("/own.xml") == 1


async def test_a_digest_claimed_by_a_replica_that_died_is_sent_once_by_another(
    telegram, news, replicas
):
    dying, survivor = replicas
    news.set_route("/hanging.xml", body=feed(["Late story"], "late"), delay=3)
    now = time.time()
    await subscribe(dying.store, 4001, [source(news, "/hanging.xml")], now - 1)

    stop = asyncio.Event()
    first = asyncio.create_task(dying.digests(claim_seconds=1, prefetch_seconds=0).run(stop))
    await asyncio.to_thread(_wait_until, lambda: news.count("/hanging.xml") >= 1)
    first.cancel()  # the replica dies mid-digest: no send, no reschedule
    await asyncio.gather(first, return_exceptions=True)
    assert telegram.sent(4001) == []

    # A later digest, due after the claim has run out, marks the end of the test.
    await subscribe(survivor.store, 4002, [source(news, "/other.xml")], time.time() + 2)
    news.set_route("/other.xml", body=feed(["Other story"], "other"))
    stop = asyncio.Event()
    second = asyncio.create_task(survivor.digests(prefetch_seconds=0).run(stop))
    try:
        await wait_sent(telegram, 1, chat_id=4002, timeout=30)
        await wait_sent(telegram, 1, chat_id=4001, timeout=30)
    finally:
        stop.set()
        # Bounded: a digest stuck in hand fails here, after what went wrong above.
        await asyncio.wait_for(second, 30)
    (digest,) = telegram.sent(4001)
    assert "Late story" in digest.displayed
    assert await survivor.store.next_due(4001) > now + 86_000  # rescheduled: sent once


def _wait_until(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.02)


async def test_a_digest_s_record_of_parts_lasts_through_its_retry_and_goes_with_it(
    telegram, news, replicas
):
    replica = replicas[0]
    chat = 2100
    # Six sources of five long titles: a digest of two messages.
    paths = [f"/long{n}.xml" for n in range(6)]
    for n, path in enumerate(paths):
        titles = [f"Story {n}.{i} " + "long words " * 12 for i in range(5)]
        news.set_route(path, body=feed(titles, f"long{n}"))
    await subscribe(replica.store, chat, [source(news, path) for path in paths], time.time())
    parts = keys.PARTS_SENT.format(scope=digest_scope(chat))
    # Refused, so not retried within the send: the digest fails and is tried again.
    telegram.fail_next(
        "sendMessage", 400, "Bad Request: message is too long", chat_id=chat, after=1
    )
    digests = replica.digests()
    await digests.send_digest(chat)  # the second part fails: the digest is tried again
    assert len(telegram.sent(chat)) == 1
    assert await replica.store.redis.scard(parts) == 1
    await digests.send_digest(chat)
    first, second = telegram.sent(chat)
    assert "Story 0.0" in first.displayed and "Story 5.4" in second.displayed  # not repeated
    assert not await replica.store.redis.exists(parts)
