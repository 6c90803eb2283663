"""Every chat command end to end: the real bot, a real Redis, the fake Telegram and news.

The bot runs in-process (``running_bot``) and is driven only through the fake Bot API;
the assertions are on what the user's chat displays.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from harness import bot_env, running_bot, wait_sent

DATA = Path(__file__).parent / "data"
CHAT = 4242
GROUP = -100123456789


def hot_titles(name: str, count: int = 5) -> list[str]:
    """The first non-stickied titles of a fixture listing, in hot order."""
    posts = [
        child["data"]
        for child in json.loads((DATA / f"reddit_{name}.json").read_text())["data"]["children"]
    ]
    return [post["title"] for post in posts if not post.get("stickied")][:count]


def newest_feed_titles(count: int = 5) -> list[str]:
    """The titles of rss20.xml, newest first, read independently of the bot's parser."""
    import xml.etree.ElementTree as ET

    items = ET.parse(DATA / "rss20.xml").getroot().iter("item")
    dated = [
        (
            email.utils.parsedate_to_datetime(item.findtext("pubDate", "")),
            item.findtext("title", ""),
        )
        for item in items
    ]
    return [title for _, title in sorted(dated, key=lambda pair: pair[0], reverse=True)][:count]


async def say(telegram, text: str, chat_id: int = CHAT, replies: int = 1) -> list[str]:
    """Send a message as the user and return the displayed text of the new replies."""
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text)
    sent = await wait_sent(telegram, before + replies, chat_id)
    return [message.displayed for message in sent[before:]]


async def test_start_and_help_name_every_command_with_an_example(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        for command in ("/start", "/help"):
            (text,) = await say(telegram, command)
            for name in (
                "/source",
                "/add",
                "/remove",
                "/fetch",
                "/subscribe",
                "/unsubscribe",
                "/stop",
                "/help",
            ):
                assert name in text
            assert "/source python, golang" in text


async def test_source_keeps_the_books_syntax_and_lists(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        (reply,) = await say(telegram, "/source python, golang")
        assert "python" in reply and "golang" in reply
        (listing,) = await say(telegram, "/sources")
        assert listing == "Your sources:\n• python\n• golang"
        (reply,) = await say(telegram, "/source r/rust https://example.org/feed.xml")
        assert "r/rust" in reply and "https://example.org/feed.xml" in reply
        assert "python" not in reply


async def test_commands_addressed_to_the_bot_in_a_group(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        (reply,) = await say(telegram, "/source@newsbot_test_bot python", chat_id=GROUP)
        assert "python" in reply
        (reply,) = await say(telegram, "/fetch@newsbot_test_bot", chat_id=GROUP)
        assert hot_titles("python")[0] in reply


async def test_add_and_remove_show_the_list_after_the_edit(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        (reply,) = await say(telegram, "/add golang, r/rust python")
        assert reply == "Your sources:\n• python\n• golang\n• r/rust"
        (reply,) = await say(telegram, "/remove golang nosuchthing")
        assert reply.startswith("Your sources:\n• python\n• r/rust")
        assert "nosuchthing: not in your list" in reply


async def test_fetch_gives_hot_order_and_newest_feed_items_first(telegram, news, redis_url):
    feed = f"{news.url}/feeds/rss20.xml"
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source python {feed}")
        (text,) = await say(telegram, "/fetch")
    lines = text.splitlines()
    reddit = lines[lines.index("python") + 1 : lines.index("python") + 6]
    assert [line.removeprefix("• ") for line in reddit] == hot_titles("python")
    start = lines.index(feed) + 1
    assert [line.removeprefix("• ") for line in lines[start : start + 5]] == newest_feed_titles()


async def test_titles_with_markup_arrive_escaped_and_display_literally(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        await say(telegram, "/fetch")
    message = telegram.sent(CHAT)[-1]
    hostile = [title for title in hot_titles("python") if "<" in title or "&" in title]
    assert hostile, "the fixture must hold hostile titles"
    for title in hostile:
        assert title in message.displayed
    assert "&lt;script&gt;" in message.text and "<script>" not in message.text
    assert message.parse_mode == "HTML" and message.previews_disabled


async def test_a_failing_source_gets_one_line_and_the_others_still_arrive(
    telegram, news, redis_url
):
    news.slow_seconds = 5
    dead = "http://127.0.0.1:9/feed.xml"  # the discard port: nothing listens there
    failing = {
        "privatesub": "private",
        "bannedsub": "no such subreddit",
        "brokensub": "failed (503)",
        "slowsub": "timed out",
        f"{news.url}/huge": "too big",
        f"{news.url}/html": "not a feed",
        f"{news.url}/bomb": "entities",
        f"{news.url}/status/404": "not found (404)",
        dead: "could not connect",
    }
    env = bot_env(telegram, redis_url, news, NEWSBOT_FETCH_TIMEOUT="1")
    async with running_bot(env):
        await say(telegram, "/source python " + " ".join(failing))
        (text,) = await say(telegram, "/fetch")
    assert hot_titles("python")[0] in text
    for label, reason in failing.items():
        (line,) = [line for line in text.splitlines() if line.startswith(f"⚠️ {label}:")]
        assert reason in line, line


async def test_twenty_chats_fetching_one_subreddit_make_one_upstream_request(
    telegram, news, redis_url
):
    chats = range(1001, 1021)
    async with running_bot(bot_env(telegram, redis_url, news)):
        for chat in chats:
            telegram.push_message(chat, "/source python")
        await wait_sent(telegram, 20)
        for chat in chats:
            telegram.push_message(chat, "/fetch")
        await wait_sent(telegram, 40)
    assert news.count("/r/python/") == 1
    for chat in chats:
        assert hot_titles("python")[0] in telegram.sent(chat)[-1].displayed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/feeds/rss20.xml",
        "http://localhost:{port}/feeds/rss20.xml",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/feeds/rss20.xml",
        "http://2130706433:{port}/feeds/rss20.xml",
        "file:///etc/passwd",
    ],
)
async def test_ssrf_vectors_are_refused_before_any_request(telegram, news, redis_url, url):
    url = url.format(port=news.url.rsplit(":", 1)[1])
    env = bot_env(telegram, redis_url, news, NEWSBOT_ALLOW_PRIVATE_URLS="false")
    async with running_bot(env):
        (reply,) = await say(telegram, f"/source {url}")
    assert reply.startswith("Your sources are unchanged.")
    assert f"⚠️ {url}:" in reply
    assert news.count("/") == 0


async def test_stop_silences_the_chat_until_start(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        await say(telegram, "/subscribe")
        (reply,) = await say(telegram, "/stop")
        assert "/start" in reply
        before = len(telegram.sent(CHAT))
        telegram.push_message(CHAT, "/fetch")
        telegram.push_message(CHAT, "/help")
        (reply,) = await say(telegram, "/start")
        assert len(telegram.sent(CHAT)) == before + 1  # only /start was answered
        (reply,) = await say(telegram, "/unsubscribe")
        assert reply == "You had no digest."  # /stop ended it


async def test_digest_holds_only_items_not_sent_before(telegram, news, redis_url):
    feed_path = "/custom.xml"
    news.set_route(
        feed_path,
        body=_feed(["First story", "Second story"]),
        headers={"Content-Type": "application/rss+xml"},
    )
    env = bot_env(telegram, redis_url, news, NEWSBOT_MIN_INTERVAL="1", NEWSBOT_CACHE_TTL="0")
    async with running_bot(env):
        await say(telegram, f"/source {news.url}{feed_path}")
        (fetched,) = await say(telegram, "/fetch")
        assert "First story" in fetched
        (reply,) = await say(telegram, "/subscribe 2s")
        assert "every 2 seconds" in reply and "The first comes at" in reply
        news.set_route(
            feed_path,
            body=_feed(["Third story", "First story", "Second story"]),
            headers={"Content-Type": "application/rss+xml"},
        )
        (digest,) = [m.displayed for m in (await wait_sent(telegram, 4, CHAT))[3:]]
        assert "Third story" in digest
        assert "First story" not in digest and "Second story" not in digest
        # Nothing new for two more intervals: nothing is sent.
        await asyncio.sleep(5)
        assert len(telegram.sent(CHAT)) == 4
        (reply,) = await say(telegram, "/unsubscribe")
        assert reply == "Digest stopped."


async def test_subscribe_refuses_intervals_below_the_minimum(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        (reply,) = await say(telegram, "/subscribe 90s")
        assert reply == "The shortest interval is 15 minutes."
        (reply,) = await say(telegram, "/subscribe soon")
        assert "not an interval" in reply
        (reply,) = await say(telegram, "/subscribe")
        assert "every 1 day" in reply


async def test_a_chat_that_blocked_the_bot_is_unsubscribed(telegram, news, redis_url):
    env = bot_env(telegram, redis_url, news, NEWSBOT_MIN_INTERVAL="1", NEWSBOT_CACHE_TTL="0")
    async with running_bot(env):
        await say(telegram, "/source python")
        await say(telegram, "/subscribe 1s")
        telegram.block_chat(CHAT)
        await asyncio.to_thread(telegram.wait_for_calls, "sendMessage", 3, 10)
        await asyncio.sleep(3)  # three more intervals: no further attempt
        attempts = telegram.count("sendMessage")
    assert attempts == 3
    client = aioredis.Redis.from_url(redis_url)
    assert await client.zscore("newsbot:due", CHAT) is None
    await client.aclose()


async def test_a_group_upgraded_to_a_supergroup_keeps_its_settings(telegram, news, redis_url):
    old, new = -4001, -1004001
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python", chat_id=old)
        telegram.migrate_chat(old, new, notify=False)  # the bot missed the service messages
        telegram.push_message(old, "/sources")
        (listing,) = [m.displayed for m in await wait_sent(telegram, 1, new)]
        assert "python" in listing
        (listing,) = await say(telegram, "/sources", chat_id=new)
        assert "python" in listing


async def test_only_allowed_chats_are_served(telegram, redis_url):
    env = bot_env(telegram, redis_url, NEWSBOT_ALLOWED_CHATS=f"{CHAT}, -5")
    async with running_bot(env):
        telegram.push_message(777, "/start")
        await say(telegram, "/start")
    assert telegram.sent(777) == []


async def test_limits_on_sources_and_on_long_messages(telegram, redis_url):
    env = bot_env(telegram, redis_url, NEWSBOT_MAX_SOURCES="3")
    async with running_bot(env):
        (reply,) = await say(telegram, "/source a_1 b_2 c_3 d_4")
        assert "unchanged" in reply and "at most 3 sources, you gave 4" in reply.lower()
        await say(telegram, "/source a_1 b_2")
        (reply,) = await say(telegram, "/add c_3 d_4")
        assert "at most 3 sources; you have 2" in reply.lower()
        (reply,) = await say(telegram, "/source " + "x" * 5000)
        assert "too long" in reply


async def test_a_long_reply_is_split_below_telegrams_limit(telegram, news, redis_url):
    titles = [f"Story {n}: " + "long words " * 22 for n in range(40)]
    news.set_route(
        "/long.xml", body=_feed(titles), headers={"Content-Type": "application/rss+xml"}
    )
    env = bot_env(telegram, redis_url, news, NEWSBOT_ITEMS_PER_SOURCE="40")
    async with running_bot(env):
        await say(telegram, f"/source {news.url}/long.xml")
        telegram.push_message(CHAT, "/fetch")
        await asyncio.sleep(0)
        sent = await wait_sent(telegram, 4, CHAT)
        await asyncio.sleep(0.5)
    parts = [m.displayed for m in telegram.sent(CHAT)[1:]]
    assert len(parts) >= 3
    assert all(len(part) <= 4096 for part in parts)
    shown = "\n".join(parts)
    for n in range(40):
        assert f"Story {n}:" in shown
    assert sent  # every part was accepted by the fake's HTML and length checks


async def test_other_text_in_a_private_chat_points_to_help(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        (reply,) = await say(telegram, "hello?")
        assert "/help" in reply
        (reply,) = await say(telegram, "/frobnicate")
        assert "/help" in reply


def _feed(titles: list[str]) -> bytes:
    items = "".join(
        f"<item><title>{title}</title><link>https://example.org/{abs(hash(title))}</link>"
        f"<guid>https://example.org/{abs(hash(title))}</guid>"
        f"<pubDate>Tue, 26 Nov 2024 {23 - n % 24:02d}:00:00 +0000</pubDate></item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Test</title>'
        f"{items}</channel></rss>"
    ).encode()
