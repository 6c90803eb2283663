"""Quiet hours end to end: digests due in the window wait, and come as one message after it.

The in-process tests take commands through the running bot and drive a replica's digest
sender with an injected clock (instants in 2027, which the bot's own loop never reaches).
The cluster test uses a real window of under two minutes: three replica processes, all
stopped with SIGTERM inside the window and Redis restarted from its append-only file, and
the held batch still goes out once, from the replicas started after.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster_support import RedisProcess, close_all, start_replicas
from harness import bot_env, running_bot, wait_sent
from newsbot import keys
from newsbot.app import build_application
from newsbot.config import Settings
from newsbot.digests import Digests
from newsbot.news import News
from newsbot.store import Store, connect

CHAT = 6161
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
HEADING = "While you were quiet"


def rss(titles: list[str]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>https://example.org/q/{title.split()[0]}</link>"
        f"<guid>q-{title.split()[0]}</guid>"
        f"<pubDate>Tue, 24 Nov 2026 {20 - n:02d}:00:00 +0000</pubDate></item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://example.org/</link><description>d</description>{entries}"
        f"</channel></rss>"
    )


def berlin(day: int, hour: int, minute: int = 0, month: int = 1) -> float:
    return datetime.datetime(2027, month, day, hour, minute, tzinfo=BERLIN).timestamp()


async def say(telegram, text: str, chat_id: int = CHAT) -> str:
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text)
    sent = await wait_sent(telegram, before + 1, chat_id)
    return sent[before].displayed


def env_for(telegram, redis_url, news) -> dict[str, str]:
    return bot_env(telegram, redis_url, news, NEWSBOT_MIN_INTERVAL="1", NEWSBOT_CACHE_TTL="0")


async def start_replica(settings: Settings) -> tuple[Digests, Any]:
    """A replica's digest sender (its own store, news and bot), driven by the test's clock."""
    store = Store(connect(settings), settings.items_per_source)
    fetcher = News(settings, store)
    assert settings.telegram_token is not None
    application = build_application(settings, store, fetcher, settings.telegram_token)
    await application.initialize()
    return Digests(store, fetcher, application.bot, prefetch_seconds=0), application


@pytest.fixture
async def replicas(telegram, news, redis_url) -> AsyncIterator[list[Digests]]:
    """Three replicas' digest senders on the same Redis and fakes."""
    settings = Settings.from_env(env_for(telegram, redis_url, news))
    started = [await start_replica(settings) for _ in range(3)]
    yield [digests for digests, _ in started]
    for digests, application in started:
        await application.shutdown()
        digests.news.close()
        await digests.store.close()


@pytest.fixture
def replica(replicas: list[Digests]) -> Digests:
    return replicas[0]


async def test_quiet_shows_sets_and_refuses_windows(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        assert await say(telegram, "/quiet") == (
            "Quiet hours: off. Set them with /quiet 22:00-07:00"
        )
        assert await say(telegram, "/quiet 25:00-07:00") == (
            "'25:00' is not a time of day: try 08:00 or 22:30."
        )
        await say(telegram, "/tz Europe/Berlin")
        reply = await say(telegram, "/quiet 22:00–07:00")  # a phone's dash
        assert reply.startswith(
            "Quiet hours: 22:00-07:00 (Europe/Berlin time). Digests due then wait"
        )
        assert await say(telegram, "/quiet") == "Quiet hours: 22:00-07:00 (Europe/Berlin time)"
        assert await say(telegram, "/quiet off") == (
            "Quiet hours are off. Anything held comes now."
        )
        assert await say(telegram, "/quiet") == (
            "Quiet hours: off. Set them with /quiet 22:00-07:00"
        )


async def test_digests_due_in_quiet_hours_come_as_one_message_when_they_end(
    telegram, news, redis_url, replicas
):
    replica = replicas[0]
    news.set_route("/q.xml", body=rss(["Evening story"]))
    store = replica.store
    async with running_bot(env_for(telegram, redis_url, news)):
        await say(telegram, f"/source {news.url}/q.xml")
        await say(telegram, "/tz Europe/Berlin")
        await say(telegram, "/quiet 22:00-07:00")
        await say(telegram, "/subscribe 1h")
        replies = len(telegram.sent(CHAT))
        await store.reschedule(CHAT, berlin(5, 23))
        assert await replica.run_once(now=berlin(5, 23)) == 1  # due at 23:00: held
        news.set_route("/q.xml", body=rss(["Midnight story", "Evening story"]))
        assert await replica.run_once(now=berlin(6, 0)) == 1  # and at midnight
        assert await replica.run_once(now=berlin(6, 6, 59) + 59) == 1  # nothing new
        # Nothing was sent: the reply to a later command is the next message.
        assert (await say(telegram, "/tz")).startswith("Your time zone is Europe/Berlin")
        assert len(telegram.sent(CHAT)) == replies + 1
        # At 07:00 the quiet hours end: both digests in one message, in order, sent by
        # one of three replicas that look at once.
        await asyncio.gather(*(other.run_once(now=berlin(6, 7)) for other in replicas))
        assert len(telegram.sent(CHAT)) == replies + 2
        held = telegram.sent(CHAT)[-1].displayed
        assert held.startswith(HEADING)
        assert held.count("Your digest") == 2
        assert held.index("Evening story") < held.index("Midnight story")
        assert held.count("Evening story") == 1  # the second digest held only what was new
        # Delivered once: a later run and a later command bring nothing more.
        await replica.run_once(now=berlin(6, 7) + 1)
        await say(telegram, "/help")
        assert len(telegram.sent(CHAT)) == replies + 3
    assert await store.held(CHAT) == [] and await store.held_due(CHAT) is None


async def test_a_batch_held_in_quiet_hours_goes_into_the_digests_topic(
    telegram, news, redis_url, replica
):
    forum, topic = -1009000000007, 7
    telegram.add_topic(forum, topic, "News")
    news.set_route("/q.xml", body=rss(["Night story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        for count, text in enumerate(
            (f"/source {news.url}/q.xml", "/tz Europe/Berlin", "/quiet 22:00-07:00"), 1
        ):
            telegram.push_message(forum, text, thread_id=topic)
            await wait_sent(telegram, count, forum)
        telegram.push_message(forum, "/subscribe 1h", thread_id=topic)  # binds the topic
        await wait_sent(telegram, 4, forum)
        await replica.store.reschedule(forum, berlin(5, 23))
        assert await replica.run_once(now=berlin(5, 23)) == 1  # held
        await replica.run_once(now=berlin(6, 7))
        batch = (await wait_sent(telegram, 5, forum))[4]
    assert batch.displayed.startswith(HEADING) and "Night story" in batch.displayed
    assert batch.thread_id == topic


async def test_quiet_off_delivers_what_was_held_at_once(telegram, news, redis_url, replica):
    news.set_route("/q.xml", body=rss(["Night story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        await say(telegram, f"/source {news.url}/q.xml")
        await say(telegram, "/quiet 22:00-07:00")
        await say(telegram, "/subscribe 1h")
        replies = len(telegram.sent(CHAT))
        night = datetime.datetime(2027, 2, 1, 23, 0, tzinfo=datetime.UTC).timestamp()
        await replica.store.reschedule(CHAT, night)
        assert await replica.run_once(now=night) == 1
        assert len(await replica.store.held(CHAT)) == 1
        telegram.push_message(CHAT, "/quiet off")
        # The bot's own loop delivers it now, not in 2027.
        sent = await wait_sent(telegram, replies + 2, CHAT)
    texts = [message.displayed for message in sent[replies:]]
    assert "Quiet hours are off. Anything held comes now." in texts
    (held,) = [text for text in texts if text.startswith(HEADING)]
    assert "Night story" in held


def window_around_now(at_least: float) -> tuple[str, float]:
    """A UTC quiet window from this minute to a minute boundary ``at_least`` s away."""
    now = time.time()
    start = math.floor(now / 60) * 60
    end = start + 60 * math.ceil((now + at_least - start) / 60)

    def clock(moment: float) -> str:
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%H:%M")

    return f"{clock(start)}-{clock(end)}", end


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_held_digests_survive_sigterm_and_a_redis_restart_and_go_out_once(
    telegram, news, tmp_path
):
    news.set_route("/q.xml", body=rss(["First held story"]))
    held_key = keys.HELD.format(chat_id=CHAT)
    with RedisProcess(tmp_path) as redis:
        client = redis.client()
        env = {"NEWSBOT_MIN_INTERVAL": "1", "NEWSBOT_CACHE_TTL": "0"}
        replicas = start_replicas(telegram, redis.url, 3, news, **env)
        try:
            window, end = window_around_now(at_least=70)
            for text in (f"/source {news.url}/q.xml", f"/quiet {window}", "/subscribe 2s"):
                count = len(telegram.sent(CHAT))
                telegram.push_message(CHAT, text)
                telegram.wait_for_sent(count + 1, CHAT, 30)
            replies = len(telegram.sent(CHAT))
            wait_until(lambda: client.llen(held_key) == 1, 30, "the first digest's hold")
            news.set_route("/q.xml", body=rss(["Second held story", "First held story"]))
            wait_until(lambda: client.llen(held_key) == 2, 30, "the second digest's hold")
            telegram.push_message(CHAT, "/help")
            telegram.wait_for_sent(replies + 1, CHAT, 30)
            assert len(telegram.sent(CHAT)) == replies + 1  # the reply, and no digest

            # Every replica stops inside the window, and Redis restarts from its file.
            assert [replica.terminate() for replica in replicas] == [0, 0, 0]
            close_all(replicas)
            redis.stop()
            redis.start()
            assert redis.client().llen(held_key) == 2
            replicas = start_replicas(telegram, redis.url, 3, news, **env)
            assert time.time() < end, "the test was too slow for its quiet window"

            telegram.wait_for_sent(replies + 2, CHAT, end - time.time() + 60)
            telegram.push_message(CHAT, "/help")  # a later event: nothing else was sent
            telegram.wait_for_sent(replies + 3, CHAT, 30)
        finally:
            close_all(replicas)
    sent = [message.displayed for message in telegram.sent(CHAT)[replies:]]
    held = [text for text in sent if text.startswith(HEADING)]
    assert len(held) == 1 and len(sent) == 3
    assert held[0].count("First held story") == 1 and "Second held story" in held[0]


async def test_nothing_waits_for_a_chat_that_said_stop(telegram, news, redis_url, replica):
    news.set_route("/q.xml", body=rss(["Stopped story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        await say(telegram, f"/source {news.url}/q.xml")
        await say(telegram, "/quiet 22:00-07:00")
        await say(telegram, "/subscribe 1h")
        night = datetime.datetime(2027, 2, 1, 23, 0, tzinfo=datetime.UTC).timestamp()
        await replica.store.reschedule(CHAT, night)
        assert await replica.run_once(now=night) == 1
        await say(telegram, "/stop")
        await replica.run_once(now=night + 9 * 3600)
        await say(telegram, "/start")
    assert not any(m.displayed.startswith(HEADING) for m in telegram.sent(CHAT))


async def test_messages_held_while_a_batch_goes_out_wait_for_their_own_window(redis_url):
    store = Store(connect(Settings.from_env({"REDIS_URL": redis_url})))
    try:
        await store.hold(CHAT, ["first night"], until=1000)
        assert await store.claim_quiet_ends(1000, 10, hold=120) == [CHAT]
        assert await store.claim_quiet_ends(1000, 10, hold=120) == []  # claimed: once
        batch = await store.held(CHAT)
        # The next night begins before the first batch is released.
        await store.hold(CHAT, ["second night"], until=90_000)
        assert await store.release_held(CHAT, len(batch)) == 1
        assert await store.held(CHAT) == ["second night"]
        assert await store.held_due(CHAT) == 90_000
        assert await store.claim_quiet_ends(89_999, 10) == []
        assert await store.release_held(CHAT, 1) == 0
        assert await store.held_due(CHAT) is None
        for n in range(keys.HELD_MAX + 5):  # a bound: the oldest go first
            await store.hold(CHAT, [f"message {n}"], until=1000)
        held = await store.held(CHAT)
        assert len(held) == keys.HELD_MAX and held[-1] == f"message {keys.HELD_MAX + 4}"
    finally:
        await store.close()


async def test_a_new_zone_outside_the_quiet_hours_sends_what_was_held(telegram, news, redis_url):
    news.set_route("/q.xml", body=rss(["Held story"]))
    start = math.floor(time.time() / 60) * 60 - 3600

    def clock(moment: float) -> str:
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%H:%M")

    settings = Settings.from_env(env_for(telegram, redis_url, news))
    store = Store(connect(settings))
    try:
        async with running_bot(env_for(telegram, redis_url, news)):
            await say(telegram, f"/source {news.url}/q.xml")
            # Quiet from an hour ago to an hour from now, on UTC's clock.
            await say(telegram, f"/quiet {clock(start)}-{clock(start + 7200)}")
            await say(telegram, "/subscribe 1s")
            replies = len(telegram.sent(CHAT))
            while not await store.held(CHAT):
                await asyncio.sleep(0.05)
            assert len(telegram.sent(CHAT)) == replies  # held, not sent
            # In Kolkata (UTC+5:30) those hours are long past: the batch comes now.
            telegram.push_message(CHAT, "/tz Asia/Kolkata")
            sent = await wait_sent(telegram, replies + 2, CHAT)
    finally:
        await store.close()
    texts = [message.displayed for message in sent[replies:]]
    assert any(text.startswith("Your time zone is now Asia/Kolkata") for text in texts)
    (held,) = [text for text in texts if text.startswith(HEADING)]
    assert "Held story" in held
