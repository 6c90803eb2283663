"""Alerts end to end in one replica: /alert, no backfill, coalescing, filters, quiet hours.

The bot runs in-process against the fake Telegram and news servers and a real Redis, with a
one-second cache window, so its own watcher loop finds each change of a feed within a
second or two. Absence is shown by a later event: the reply to a later command, or another
chat's alert, comes next. The pure parts (the window arithmetic, rendering) are at the end.
"""

from __future__ import annotations

import asyncio

import pytest

from harness import bot_env, running_bot, wait_sent
from newsbot import alerts, keys
from newsbot.models import Item, Source

CHAT = 7101
OTHER = 7102


def rss(titles: list[str]) -> str:
    """A feed, newest first; each title's first word names its item."""
    entries = "".join(
        f"<item><title>{title}</title><link>https://example.org/a/{title.split()[0]}</link>"
        f"<guid>a-{title.split()[0]}</guid></item>"
        for title in titles
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://example.org/</link><description>d</description>{entries}"
        f"</channel></rss>"
    )


def env_for(telegram, redis_url, news, **overrides: str) -> dict[str, str]:
    return bot_env(telegram, redis_url, news, NEWSBOT_CACHE_TTL="1", **overrides)


async def say(telegram, text: str, chat_id: int = CHAT) -> str:
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text)
    sent = await wait_sent(telegram, before + 1, chat_id)
    return sent[before].displayed


async def next_messages(telegram, count: int, chat_id: int = CHAT) -> list[str]:
    """The next ``count`` messages the chat gets, from now."""
    before = len(telegram.sent(chat_id))
    sent = await wait_sent(telegram, before + count, chat_id, timeout=30)
    return [message.displayed for message in sent[before:]]


async def test_alert_sends_only_what_appears_later_each_item_once(telegram, news, redis_url):
    news.set_route("/a.xml", body=rss(["Old1 story", "Old2 story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        assert await say(telegram, "/alert") == (
            "No alerts. For example: /alert r/python sends each new post as it appears."
        )
        reply = await say(telegram, f"/alert {news.url}/a.xml")
        assert reply.startswith(f"Alerts on:\n• {news.url}/a.xml")
        assert "New items come here as they appear." in reply
        after_set = len(telegram.sent(CHAT))
        news.set_route("/a.xml", body=rss(["New1 story", "Old1 story", "Old2 story"]))
        (first,) = await next_messages(telegram, 1)
        assert "New1 story" in first and "Old" not in first
        news.set_route(
            "/a.xml", body=rss(["New2 story", "New3 story", "New1 story", "Old1 story"])
        )
        second, third = await next_messages(telegram, 2)
        # Oldest first, each its own message.
        assert "New3 story" in second and "New2 story" in third
        # Nothing more: the reply to /help is the next message, though windows passed.
        await asyncio.sleep(2.5)
        assert (await say(telegram, "/help")).startswith("Newsbot")
        assert len(telegram.sent(CHAT)) == after_set + 4
        assert await say(telegram, "/alert") == f"Alerts on:\n• {news.url}/a.xml"


async def test_more_than_three_new_items_come_as_one_message(telegram, news, redis_url):
    news.set_route("/a.xml", body=rss(["Old1 story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        await say(telegram, f"/alert {news.url}/a.xml")
        news.set_route("/a.xml", body=rss([f"N{n} story" for n in range(5)] + ["Old1 story"]))
        (burst,) = await next_messages(telegram, 1)
        assert burst.startswith("5 new items")
        assert all(f"N{n} story" in burst for n in range(5)) and "Old1" not in burst
        assert (await say(telegram, "/help")).startswith("Newsbot")


async def test_alerts_honour_filters_and_one_story_once(telegram, news, redis_url):
    news.set_route("/a.xml", body=rss(["Old1 story"]))
    news.set_route("/b.xml", body=rss(["Old2 story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        await say(telegram, f"/source {news.url}/a.xml")
        await say(telegram, '/filter * -"boring"')
        await say(telegram, f"/alert {news.url}/a.xml {news.url}/b.xml")
        # The same article on both feeds, and one the filter drops.
        news.set_route("/a.xml", body=rss(["Shared story", "Boring story", "Old1 story"]))
        news.set_route("/b.xml", body=rss(["Shared story", "Old2 story"]))
        (shared,) = await next_messages(telegram, 1)
        assert "Shared story" in shared
        news.set_route("/a.xml", body=rss(["Later story", "Shared story", "Boring story"]))
        (later,) = await next_messages(telegram, 1)
        assert "Later story" in later
    texts = [message.displayed for message in telegram.sent(CHAT)]
    assert not any("Boring story" in text for text in texts)
    assert sum("Shared story" in text for text in texts) == 1


async def test_alert_off_stops_and_other_chats_go_on(telegram, news, redis_url):
    news.set_route("/a.xml", body=rss(["Old1 story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        feed = f"{news.url}/a.xml"
        await say(telegram, f"/alert {feed}")
        await say(telegram, f"/alert {feed}", chat_id=OTHER)
        assert await say(telegram, f"/alert off {feed}") == (
            "No alerts. For example: /alert r/python sends each new post as it appears."
        )
        mine = len(telegram.sent(CHAT))
        news.set_route("/a.xml", body=rss(["New1 story", "Old1 story"]))
        (theirs,) = await next_messages(telegram, 1, chat_id=OTHER)
        assert "New1 story" in theirs
        assert (await say(telegram, "/help")).startswith("Newsbot")
        assert len(telegram.sent(CHAT)) == mine + 1  # the other chat's alert came, not mine
        reply = await say(telegram, f"/alert off {feed}")
        assert "no alert on it" in reply


async def test_stopped_chat_gets_no_alerts(telegram, news, redis_url):
    news.set_route("/a.xml", body=rss(["Old1 story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        feed = f"{news.url}/a.xml"
        await say(telegram, f"/alert {feed}")
        await say(telegram, f"/alert {feed}", chat_id=OTHER)
        await say(telegram, "/stop")
        stopped = len(telegram.sent(CHAT))
        news.set_route("/a.xml", body=rss(["New1 story", "Old1 story"]))
        await next_messages(telegram, 1, chat_id=OTHER)
        await say(telegram, "/start")
        assert len(telegram.sent(CHAT)) == stopped + 1  # only the reply to /start


async def test_quiet_hours_hold_an_alert_and_deliver_it_after(telegram, news, redis_url):
    news.set_route("/a.xml", body=rss(["Old1 story"]))
    async with running_bot(env_for(telegram, redis_url, news)):
        feed = f"{news.url}/a.xml"
        await say(telegram, f"/alert {feed}")
        await say(telegram, f"/alert {feed}", chat_id=OTHER)
        await say(telegram, "/quiet 00:00-23:59")  # quiet now, whatever the time
        quiet = len(telegram.sent(CHAT))
        news.set_route("/a.xml", body=rss(["Night story", "Old1 story"]))
        # The other chat has it; this one holds it.
        await next_messages(telegram, 1, chat_id=OTHER)
        assert (await say(telegram, "/help")).startswith("Newsbot")
        assert len(telegram.sent(CHAT)) == quiet + 1
        telegram.push_message(CHAT, "/quiet off")
        texts = await next_messages(telegram, 2)
    assert "Quiet hours are off. Anything held comes now." in texts
    (held,) = [text for text in texts if text.startswith("While you were quiet")]
    assert "Night story" in held


async def test_sources_and_alerts_count_together_toward_the_limit(telegram, news, redis_url):
    async with running_bot(env_for(telegram, redis_url, news, NEWSBOT_MAX_SOURCES="3")):
        await say(telegram, "/source python golang")
        reply = await say(telegram, "/alert rust haskell")
        assert "At most 3 sources and alerts together; you have 2" in reply
        assert "No alerts" in reply
        # A source in both lists counts once.
        assert (await say(telegram, "/alert python rust")).startswith(
            "Alerts on:\n• python\n• rust"
        )
        assert "At most 3 sources" in await say(telegram, "/add haskell")
        assert "At most 3 sources" in await say(telegram, "/source aaa bbb ccc")
        assert (await say(telegram, "/source python golang")).startswith("Your sources are now:")


@pytest.mark.parametrize("ttl", [1.0, 300.0])
def test_checks_keep_their_offset_in_the_window(ttl: float):
    digests = [f"{n:08x}" + "0" * 24 for n in range(0, 2**32, 2**28)]
    firsts = [alerts.next_check(1000.0, ttl, digest) for digest in digests]
    # Spread over one window after now, not all at once.
    assert all(1000.0 < first <= 1000.0 + ttl for first in firsts)
    assert len(set(firsts)) == len(digests)
    for digest, first in zip(digests, firsts, strict=False):
        # The next check is exactly one window later, at the same offset.
        assert alerts.next_check(first, ttl, digest) == pytest.approx(first + ttl)


def test_render_alerts_one_message_each_up_to_three():
    source = Source("feed", "https://example.org/f", "example.org/f")
    items = [Item(id=str(n), title=f"T{n}", link=f"https://example.org/{n}") for n in range(4)]
    assert len(alerts.render_alerts(source, items[:3])) == 3
    (one,) = alerts.render_alerts(source, items)
    assert one.startswith("<b>4 new items</b>")


def test_alert_keys_are_forgotten_with_the_chat():
    assert keys.ALERTS in keys.CHAT_KEYS and keys.ALERT_KNOWN in keys.CHAT_KEYS
