"""One story once and the chat's own clock, end to end.

The bot runs in-process against a real redis-server, the fake Telegram and the fake news
server. Where a digest must run at a given instant (a daylight-saving change), the test
drives the digest sender of a replica's own parts with an injected clock
(``Digests.run_once(now=...)``) after the bot that took the commands has stopped.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
import zoneinfo
from collections.abc import AsyncIterator

import pytest

from harness import bot_env, running_bot, wait_sent
from newsbot.app import build_application
from newsbot.config import Settings
from newsbot.digests import Digests
from newsbot.models import Source
from newsbot.news import News
from newsbot.store import Store, connect

CHAT = 5151
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
UTC = datetime.UTC


def rss(items: list[tuple[str, str, str]]) -> str:
    """An RSS feed of (title, link, guid), newest first."""
    entries = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>"
        f"<pubDate>Tue, 24 Nov 2026 {20 - n:02d}:00:00 +0000</pubDate></item>"
        for n, (title, link, guid) in enumerate(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://example.org/</link><description>d</description>{entries}"
        f"</channel></rss>"
    )


def listing(posts: list[dict[str, object]]) -> str:
    """A Reddit hot listing of the given posts."""
    return json.dumps(
        {"kind": "Listing", "data": {"children": [{"kind": "t3", "data": post} for post in posts]}}
    )


LINK_POST = {
    "name": "t3_m1",
    "id": "m1",
    "title": "The same story, posted to Reddit",
    "permalink": "/r/mergesub/comments/m1/the_same_story/",
    "url": "https://example.org/story/1?fbclid=IwAR0xyz",
    "is_self": False,
    "created_utc": 1_795_000_000,
}


def serve_the_same_story(news) -> tuple[str, str]:
    """Two feeds and a subreddit that carry one article under three URLs."""
    news.set_route(
        "/a.xml",
        body=rss(
            [
                ("The same story", "https://example.org/story/1", "a-1"),
                ("Only in A", "https://example.org/only-a", "a-2"),
            ]
        ),
    )
    news.set_route(
        "/b.xml",
        body=rss(
            [
                ("The same story, as B titles it", "https://www.example.org/story/1/", "b-1"),
                ("Only in B", "https://example.org/only-b", "b-2"),
            ]
        ),
    )
    news.set_route(
        "/r/mergesub/hot.json",
        body=listing([LINK_POST]),
        headers={"Content-Type": "application/json"},
    )
    return f"{news.url}/a.xml", f"{news.url}/b.xml"


async def say(telegram, text: str, chat_id: int = CHAT) -> str:
    """Send a message as the user and return the displayed text of the one reply."""
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text)
    sent = await wait_sent(telegram, before + 1, chat_id)
    return sent[before].displayed


def merged_line(feed_b: str) -> str:
    return f"• The same story also: {feed_b}, mergesub"


async def test_fetch_shows_an_article_of_three_sources_once_naming_the_others(
    telegram, news, redis_url
):
    feed_a, feed_b = serve_the_same_story(news)
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {feed_a} {feed_b} mergesub")
        text = await say(telegram, "/fetch")
    lines = text.splitlines()
    assert lines[:3] == [feed_a, merged_line(feed_b), "• Only in A"]
    assert lines[lines.index(feed_b) + 1 : lines.index(feed_b) + 2] == ["• Only in B"]
    assert lines[lines.index("mergesub") + 1] == "all shown above"
    assert "as B titles it" not in text and "posted to Reddit" not in text


async def test_a_digest_shows_it_once_and_the_next_does_not_bring_it_back(
    telegram, news, redis_url
):
    feed_a, feed_b = serve_the_same_story(news)
    env = bot_env(telegram, redis_url, news, NEWSBOT_MIN_INTERVAL="1", NEWSBOT_CACHE_TTL="0")
    async with running_bot(env):
        await say(telegram, f"/source {feed_a} {feed_b} mergesub")
        await say(telegram, "/subscribe 2s")
        (digest,) = [m.displayed for m in (await wait_sent(telegram, 3, CHAT))[2:]]
        assert merged_line(feed_b) in digest.splitlines()
        assert digest.count("same story") == 1  # B's and Reddit's titles are not shown
        # Tomorrow: A no longer has it, B has it under a new id and a tracking parameter,
        # Reddit still has its link post; and B has one new story.
        news.set_route("/a.xml", body=rss([("Only in A", "https://example.org/only-a", "a-2")]))
        news.set_route(
            "/b.xml",
            body=rss(
                [
                    ("Brand new story", "https://example.org/new", "b-3"),
                    ("The same story, again", "https://example.org/story/1?utm_source=rss", "b-9"),
                    ("Only in B", "https://example.org/only-b", "b-2"),
                ]
            ),
        )
        (digest,) = [m.displayed for m in (await wait_sent(telegram, 4, CHAT))[3:]]
        assert await say(telegram, "/unsubscribe") == "Digest stopped."
    assert "Brand new story" in digest
    assert "same story" not in digest.lower() and "Only in" not in digest
    assert "mergesub" not in digest  # the subreddit had nothing new
    assert len(telegram.sent(CHAT)) == 5  # nothing else came between


async def test_tz_sets_shows_and_refuses_a_zone_naming_it(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        assert (await say(telegram, "/tz")).startswith("Your time zone is UTC (now ")
        reply = await say(telegram, "/tz Mars/Olympus_Mons")
        assert reply == (
            "'Mars/Olympus_Mons' is not a time zone: try an IANA name such as Europe/Berlin."
        )
        reply = await say(telegram, "/tz europe/berlin")
        assert reply.startswith("Your time zone is now Europe/Berlin (now ")
        assert reply.split("(now ", 1)[1][:-2].endswith(("CET", "CEST"))
        assert (await say(telegram, "/tz")).startswith("Your time zone is Europe/Berlin")
        assert await say(telegram, "/subscribe 25:00") == (
            "'25:00' is not a time of day: try 08:00 or 22:30."
        )
        assert await say(telegram, "/subscribe mon") == (
            "A weekly digest needs a time too: try mon 08:00."
        )
        help_text = await say(telegram, "/help")
        for example in ("/tz Europe/Berlin", "/subscribe 08:00", "/quiet 22:00-07:00"):
            assert example in help_text


def next_eight(zone: zoneinfo.ZoneInfo, after: float, weekday: int | None = None) -> float:
    """The first 08:00 wall-clock time in ``zone`` after ``after`` (no gap at 08:00)."""
    day = datetime.datetime.fromtimestamp(after, zone).date()
    while True:
        moment = datetime.datetime.combine(day, datetime.time(8, 0), tzinfo=zone)
        if moment.timestamp() > after and (weekday is None or day.weekday() == weekday):
            return moment.timestamp()
        day += datetime.timedelta(days=1)


@pytest.fixture
async def replica(telegram, news, redis_url) -> AsyncIterator[Digests]:
    """A replica's digest sender (its store, news and bot), driven by the test's clock."""
    settings = Settings.from_env(bot_env(telegram, redis_url, news, NEWSBOT_CACHE_TTL="0"))
    store = Store(connect(settings), settings.items_per_source)
    fetcher = News(settings, store)
    assert settings.telegram_token is not None
    application = build_application(settings, store, fetcher, settings.telegram_token)
    await application.initialize()
    yield Digests(store, fetcher, application.bot, prefetch_seconds=0)
    await application.shutdown()
    fetcher.close()
    await store.close()


async def test_subscribe_at_a_local_time_runs_once_a_local_day_across_spring_forward(
    telegram, news, redis_url, replica
):
    feed_a, _ = serve_the_same_story(news)
    store = replica.store
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {feed_a}")
        await say(telegram, "/tz Europe/Berlin")
        before = time.time()
        reply = await say(telegram, "/subscribe 08:00")
        first = next_eight(BERLIN, before)
        assert await store.next_due(CHAT) == first
        shown = datetime.datetime.fromtimestamp(first, BERLIN).strftime("%Y-%m-%d 08:00 %Z")
        assert reply.startswith(
            "Subscribed: a digest of what is new every day at 08:00 "
            "(Europe/Berlin time). The first comes at " + shown + "."
        )
        # A new zone moves the digest to 08:00 there.
        reply = await say(telegram, "/tz America/New_York")
        assert await store.next_due(CHAT) == next_eight(NEW_YORK, time.time())
        assert "Your digest (every day at 08:00) next comes at" in reply
        await say(telegram, "/tz Europe/Berlin")
        before = time.time()
        reply = await say(telegram, "/subscribe mon 08:00")
        assert await store.next_due(CHAT) == next_eight(BERLIN, before, weekday=0)
        assert "every Monday at 08:00 (Europe/Berlin time)" in reply
        await say(telegram, "/subscribe 08:00")
    # 2026-03-29: Berlin's clocks go from 02:00 CET to 03:00 CEST. 08:00 is 07:00 UTC on
    # the Saturday and 06:00 UTC on the Sunday and after.
    saturday = datetime.datetime(2026, 3, 28, 7, 0, tzinfo=UTC).timestamp()
    await store.reschedule(CHAT, saturday)
    assert await replica.run_once(now=saturday - 1) == 0
    assert await replica.run_once(now=saturday) == 1
    digest = telegram.sent(CHAT)[-1]  # run_once returns once the digest was sent
    assert digest.displayed.startswith("Your digest") and "The same story" in digest.displayed
    sunday = datetime.datetime(2026, 3, 29, 6, 0, tzinfo=UTC).timestamp()
    assert await store.next_due(CHAT) == sunday
    assert await replica.run_once(now=sunday - 1) == 0  # 07:59 CEST: not yet
    assert await replica.run_once(now=sunday + 30) == 1
    monday = datetime.datetime(2026, 3, 30, 6, 0, tzinfo=UTC).timestamp()
    assert await store.next_due(CHAT) == monday
    # 2026-10-25: back from 03:00 CEST to 02:00 CET; 08:00 moves from 06:00 to 07:00 UTC.
    saturday = datetime.datetime(2026, 10, 24, 6, 0, tzinfo=UTC).timestamp()
    await store.reschedule(CHAT, saturday)
    assert await replica.run_once(now=saturday) == 1
    sunday = datetime.datetime(2026, 10, 25, 7, 0, tzinfo=UTC).timestamp()
    assert await store.next_due(CHAT) == sunday
    assert await replica.run_once(now=sunday - 3600) == 0  # 07:00 CET: not yet
    assert await replica.run_once(now=sunday) == 1
    assert await store.next_due(CHAT) == sunday + 86_400


async def test_interval_digests_keep_working_in_a_chat_with_a_zone(telegram, redis_url):
    env = bot_env(telegram, redis_url)
    async with running_bot(env):
        await say(telegram, "/tz Asia/Kathmandu")
        before = time.time()
        reply = await say(telegram, "/subscribe 6h")
        after = time.time()
    assert reply.startswith(
        "Subscribed: a digest of what is new every 6 hours. The first comes at "
    )
    assert reply.splitlines()[0].endswith(" +0545.")  # Kathmandu's clock, as it reads
    settings = Settings.from_env(env)
    store = Store(connect(settings))
    due = await store.next_due(CHAT)
    await store.close()
    assert before + 6 * 3600 <= due <= after + 6 * 3600


async def test_items_marked_by_id_before_articles_had_keys_still_count_as_sent(
    telegram, news, replica
):
    feed_a, _ = serve_the_same_story(news)
    store = replica.store
    await store.set_sources(CHAT, [Source("feed", feed_a, feed_a)])
    # What the bot before one-story-once marked after sending feed A: its items' ids.
    await store.mark_seen(
        CHAT, [hashlib.sha256(guid.encode()).hexdigest()[:16] for guid in ("a-1", "a-2")]
    )
    await store.subscribe(CHAT, 86_400, 1000)
    assert await replica.run_once(now=1000) == 1
    news.set_route(
        "/a.xml",
        body=rss(
            [
                ("Fresh in A", "https://example.org/fresh", "a-3"),
                ("The same story", "https://example.org/story/1", "a-1"),
            ]
        ),
    )
    await store.reschedule(CHAT, 2000)
    assert await replica.run_once(now=2000) == 1
    (digest,) = [message.displayed for message in telegram.sent(CHAT)]
    assert "Fresh in A" in digest and "same story" not in digest
