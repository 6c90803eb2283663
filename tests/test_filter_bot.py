"""/filter end to end: the real bot in-process, a real Redis, the fake Telegram and news.

Every rule kind is checked on what /fetch and a digest display. The feeds are longer
than ``NEWSBOT_ITEMS_PER_SOURCE``, so a filter that ran after the cut would show fewer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from telegram import Bot

from harness import bot_env, running_bot, wait_sent
from newsbot.app import build_application
from newsbot.config import Settings
from newsbot.digests import Digests
from newsbot.filters import parse_rules
from newsbot.models import Source
from newsbot.news import News
from newsbot.store import Store, connect
from test_bot import CHAT, say

TITLES = [
    "Rust 1.80 released",  # 0 (newest)
    "Sponsored: buy our cloud",
    "A game dev diary",
    "Show HN: a tiny Lisp",
    "Go 1.23 is out",
    "Rust in the Linux kernel",  # 5
    "Hiring: Rust engineers (beta team)",
    "Python 3.13 beta 1",
    "Game of the year: Rust edition",
    "Release notes for Django 5.1",
    "Rust beta channel news",  # 10
    "Why we left Rust",
    "Rust and WebAssembly",
    "The state of Rust game dev",
    "Release: curl 8.9",
    "Rust async book",  # 15
]


def feed(titles: list[str], name: str = "f") -> bytes:
    items = "".join(
        f"<item><title>{title}</title><link>https://example.org/{name}/{n}</link>"
        f"<guid>{name}-{n}</guid><pubDate>Tue, 26 Nov 2024 {23 - n:02d}:00:00 +0000</pubDate>"
        f"</item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>'
        f"{items}</channel></rss>"
    ).encode()


def shown(reply: str) -> list[str]:
    return [line.removeprefix("• ") for line in reply.splitlines() if line.startswith("• ")]


def pick(*indexes: int) -> list[str]:
    return [TITLES[n] for n in indexes]


@pytest.fixture
def feed_url(news) -> str:
    news.set_route("/tech.xml", body=feed(TITLES), headers={"Content-Type": "application/rss+xml"})
    return f"{news.url}/tech.xml"


async def test_every_rule_kind_on_fetch(telegram, news, redis_url, feed_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {feed_url}")
        (reply,) = await say(telegram, "/fetch")
        assert shown(reply) == pick(0, 1, 2, 3, 4)
        cases = [
            ("rust", pick(0, 5, 6, 8, 10)),  # a word, case-insensitive
            ('"game dev"', pick(2, 13)),  # a phrase
            ("-rust", pick(1, 2, 3, 4, 7)),  # drop a word
            ('-"Sponsored:" -"game dev"', pick(0, 3, 4, 5, 6)),  # drop phrases
            ("/^rust\\b/", pick(0, 5, 10, 12, 15)),  # a regex, case-insensitive
            ("rust -/beta|game/", pick(0, 5, 11, 12, 15)),  # keep, and drop a regex
            ("/^release/ lisp", pick(3, 9, 14)),  # fewer match than 5: all
            ("example.org/f/7", pick(7)),  # a word on the link
            ("nosuchword", []),
            ("/f/1$/", pick(1)),  # a regex on the link
        ]
        for rules, expected in cases:
            (answer,) = await say(telegram, f"/filter {feed_url} {rules}")
            assert answer.startswith(f"Filters on {feed_url} are now: "), answer
            (reply,) = await say(telegram, "/fetch")
            assert shown(reply) == expected, rules
        upstream = news.count("/tech.xml")
    assert upstream == 1  # every filter was applied to the one cached download


async def test_star_rules_apply_to_every_source_and_combine(telegram, news, redis_url, feed_url):
    news.set_route(
        "/other.xml",
        body=feed(["Rust weekly", "Sponsored: ads", "Cats"], "o"),
        headers={"Content-Type": "application/rss+xml"},
    )
    other = f"{news.url}/other.xml"
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {feed_url} {other}")
        await say(telegram, "/filter * -sponsored")
        await say(telegram, f"/filter {other} cats")
        (reply,) = await say(telegram, "/fetch")
        assert shown(reply) == [*pick(0, 2, 3, 4, 5), "Cats"]
        (listing,) = await say(telegram, "/filter")
        assert listing == (f"Your filters:\n• all sources: -sponsored\n• {other}: cats")
        (reply,) = await say(telegram, f"/filter {other} off")
        assert reply == f"No filters on {other} now."
        (reply,) = await say(telegram, "/filter * off")
        (listing,) = await say(telegram, "/filter")
        assert listing.startswith("No filters.")


async def test_a_source_is_named_as_written_or_by_its_key(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        for name in ("python", "r/python", "/r/Python"):
            (reply,) = await say(telegram, f"/filter {name} django")
            assert reply.startswith("Filters on python are now: django")
        (reply,) = await say(telegram, "/filter golang django")
        assert reply.startswith("golang is not one of your sources") and "• python" in reply


@pytest.mark.parametrize(
    "rules, reason",
    [
        ("/(?<=x)y/", "not a valid regex (invalid perl operator: (?<"),
        ("/a(/", "not a valid regex (missing ): a()"),
        ('"open', 'a phrase needs a closing "'),
        ("x" * 201, "a rule is at most 200 characters"),
        (" ".join(f"w{n}" for n in range(21)), "at most 20 rules a chat; you have 0"),
    ],
)
async def test_bad_rules_are_refused_with_the_reason(telegram, news, redis_url, rules, reason):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python")
        await say(telegram, "/filter python keepme")
        (reply,) = await say(telegram, f"/filter python {rules}")
        assert reply.startswith("Filters unchanged: ")
        assert reason in reply
        (listing,) = await say(telegram, "/filter")
        assert listing == "Your filters:\n• python: keepme"


async def test_the_twenty_rule_limit_counts_every_source(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python golang")
        await say(telegram, "/filter python " + " ".join(f"p{n}" for n in range(15)))
        (reply,) = await say(telegram, "/filter golang " + " ".join(f"g{n}" for n in range(6)))
        assert "at most 20 rules a chat; you have 15 on other sources and gave 6" in reply
        (reply,) = await say(telegram, "/filter golang " + " ".join(f"g{n}" for n in range(5)))
        assert reply.startswith("Filters on golang are now:")
        # Replacing a source's rules frees its own: 15 more on python are fine.
        (reply,) = await say(telegram, "/filter python " + " ".join(f"q{n}" for n in range(15)))
        assert reply.startswith("Filters on python are now:")


async def test_a_pathological_regex_on_a_huge_title_leaves_the_bot_responsive(
    telegram, news, redis_url
):
    huge = "a" * 100_000 + "!"  # (a+)+$ backtracks for ages on this, on re
    titles = ["aaa", huge, "ab", "aaaa", huge + "x", "a"]
    news.set_route(
        "/evil.xml", body=feed(titles, "e"), headers={"Content-Type": "application/rss+xml"}
    )
    other = 5151
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {news.url}/evil.xml")
        await say(telegram, "/filter * /(a+)+$/")
        before = len(telegram.sent(CHAT))
        telegram.push_message(CHAT, "/fetch")
        telegram.push_message(other, "/help")  # another chat, at the same time
        telegram.push_message(CHAT, "/filter")  # and this chat's next command
        fetched, listing = [
            m.displayed for m in (await wait_sent(telegram, before + 2, CHAT))[before:]
        ]
        (helped,) = [m.displayed for m in await wait_sent(telegram, 1, other)]
    assert shown(fetched) == ["aaa", "aaaa", "a"]
    assert listing == "Your filters:\n• all sources: /(a+)+$/"
    assert "/filter" in helped


# --- digests ---------------------------------------------------------------------------


@pytest.fixture
async def replica(telegram, news, redis_url) -> AsyncIterator[tuple[Store, News, Bot]]:
    """A second replica's digest parts, to run a digest when the test says it is due."""
    settings = Settings.from_env(bot_env(telegram, redis_url, news))
    store = Store(connect(settings), settings.items_per_source)
    news_ = News(settings, store)
    assert settings.telegram_token is not None
    application = build_application(settings, store, news_, settings.telegram_token)
    await application.initialize()
    yield store, news_, application.bot
    await application.shutdown()
    news_.close()
    await store.close()


async def test_a_digest_holds_the_filtered_items_and_still_fills_up(
    telegram, news, redis_url, feed_url, replica
):
    store, news_, bot = replica
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, f"/source {feed_url} python")
        await say(telegram, '/filter * -"game dev" -/^sponsored/')
        await say(telegram, f'/filter {feed_url} rust /^release/ "tiny lisp" -beta')
        await say(telegram, "/filter python -/./")  # drops every post of r/python
        (reply,) = await say(telegram, "/subscribe 1d")
        assert "every 1 day" in reply
        before = len(telegram.sent(CHAT))
        sent = await Digests(store, news_, bot).run_once(now=time.time() + 86_401)
        assert sent == 1
        (digest,) = [m.displayed for m in telegram.sent(CHAT)[before:]]
        assert shown(digest) == pick(0, 3, 5, 8, 9)
    assert "python" not in digest  # nothing left of it: no block at all


async def test_filters_go_with_their_source_and_move_with_a_migrated_group(
    telegram, news, redis_url
):
    old, new = -4002, -1004002
    async with running_bot(bot_env(telegram, redis_url, news)):
        (text,) = await say(telegram, "/help", chat_id=old)
        assert "/filter" in text and "/export" in text
        await say(telegram, "/source python golang", chat_id=old)
        await say(telegram, "/filter python django", chat_id=old)
        await say(telegram, "/filter golang generics", chat_id=old)
        # Removed and added again, a source comes back without its old rules.
        await say(telegram, "/remove golang", chat_id=old)
        await say(telegram, "/add golang", chat_id=old)
        (listing,) = await say(telegram, "/filter", chat_id=old)
        assert listing == "Your filters:\n• python: django"
        telegram.migrate_chat(old, new, notify=False)  # the bot missed the service messages
        telegram.push_message(old, "/sources")
        await wait_sent(telegram, 1, new)
        (listing,) = await say(telegram, "/filter", chat_id=new)
    assert listing == "Your filters:\n• python: django"


async def test_a_migration_into_a_chat_with_filters_keeps_both(redis_url):
    store = Store(connect(Settings.from_env({"REDIS_URL": redis_url})))
    try:
        old, new = -4003, -1004003
        await store.set_sources(
            old, [Source("reddit", "r/python", "python"), Source("reddit", "r/golang", "golang")]
        )
        await store.set_sources(new, [Source("reddit", "r/python", "python")])
        await store.set_filters(
            old, {"r/python": parse_rules("old"), "r/golang": parse_rules("generics")}
        )
        await store.set_filters(new, {"r/python": parse_rules("new -spam")})
        await store.migrate_chat(old, new, max_sources=20)
        assert await store.get_filters(new) == {
            "r/python": parse_rules("new -spam"),
            "r/golang": parse_rules("generics"),
        }
        assert await store.get_filters(old) == {}
    finally:
        await store.close()
